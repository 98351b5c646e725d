// The sidebar (templates/_sidebar.html): the person's rooms and direct messages with live unread
// and mention counts, from the socket's `activity` and `read` frames and from /sidebar.json (after
// each hello, and when a room not listed has activity); on phones it is a drawer.

// Whether a message notifies at a room's level: "all", "mentions" (only mentions) or "nothing".
export function notifies(level, mention) {
  return level === "all" || (level === "mentions" && mention);
}

export class Sidebar {
  constructor({ nav, me, room, url, onChange }) {
    this.nav = nav;
    this.me = me;
    this.room = room; // the current room's slug
    this.url = url; // /sidebar.json
    this.onChange = onChange;
    this.blank = nav.querySelector("#sidebar-entry-template").content.querySelector("li");
    this.reads = new Map(); // slug -> highest seq read elsewhere (a `read` frame) on this page
    this.refreshing = null;
    this.again = false; // a refresh was asked for while one was under way
    // slug -> { li, slug, name, kind, url, notify, lastSeq, unread, mentions }
    this.entries = new Map();
    for (const li of nav.querySelectorAll(".sb-list li.sb-entry")) {
      const d = li.dataset;
      this.entries.set(d.slug, {
        li,
        slug: d.slug,
        name: d.name, // as the server's: "#General", or the other person's login
        kind: d.kind,
        url: li.querySelector("a").getAttribute("href"),
        notify: d.notify,
        lastSeq: Number(d.lastSeq) || 0,
        unread: Number(d.unread) || 0,
        mentions: Number(d.mentions) || 0,
      });
    }
  }

  get(slug) {
    return this.entries.get(slug) || null;
  }

  // The current room's entry (null if the list does not have it).
  current() {
    return this.get(this.room);
  }

  // The logins of the direct conversations' other people.
  partners() {
    const logins = [];
    for (const e of this.entries.values()) {
      if (e.kind === "direct") logins.push(...e.name.split(", ")); // "<me> (notes to self)" too
    }
    return logins;
  }

  // What notifies in the other rooms: unread messages at "all", mentions at "mentions".
  notifying() {
    let count = 0;
    for (const e of this.entries.values()) {
      if (e.slug === this.room || e.notify === "nothing") continue;
      count += e.notify === "all" ? e.unread : e.mentions;
    }
    return count;
  }

  totalUnread() {
    let count = 0;
    for (const e of this.entries.values()) if (e.slug !== this.room) count += e.unread;
    return count;
  }

  // A new message in another room: counted once (by seq); returns its entry if it is someone
  // else's, for the notification, else null.
  activity(frame) {
    if (frame.room === this.room) return null;
    const e = this.get(frame.room);
    if (!e) {
      this.refresh(); // a new conversation, or a room one was just added to
      return null;
    }
    if (!(frame.seq > e.lastSeq)) return null; // counted already (or in the page's counts)
    e.lastSeq = frame.seq;
    if (frame.user === this.me) return null; // written on another tab or device
    e.unread += 1;
    if (frame.mention) e.mentions += 1;
    this.show(e);
    this.onChange();
    return e;
  }

  // The person read a room up to seq on another socket: its badges go.
  read(frame) {
    this.reads.set(frame.room, Math.max(this.reads.get(frame.room) || 0, frame.seq));
    const e = this.get(frame.room);
    if (!e || e.slug === this.room) return;
    this.applyRead(e);
    this.show(e);
    this.onChange();
  }

  applyRead(e) {
    const seq = this.reads.get(e.slug);
    if (seq === undefined) return;
    e.unread = Math.min(e.unread, Math.max(0, e.lastSeq - seq));
    if (e.unread === 0) e.mentions = 0;
    else e.mentions = Math.min(e.mentions, e.unread);
  }

  setLevel(slug, level) {
    const e = this.get(slug);
    if (!e) return;
    e.notify = level;
    this.show(e);
    this.onChange();
  }

  // Fetch the list again (coalesced: one request at a time, one more if asked meanwhile).
  refresh() {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = fetch(this.url, { headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((data) => this.replace(data.rooms || []))
      .catch(() => {}) // offline: the socket's next hello asks again
      .finally(() => {
        this.refreshing = null;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
    return this.refreshing;
  }

  // Rebuild both lists from the server's, keeping what this page knows that is newer.
  replace(rooms) {
    const fresh = new Map();
    for (const r of rooms) {
      const old = this.get(r.slug);
      const e = {
        li: old ? old.li : this.blank.cloneNode(true),
        slug: r.slug,
        name: r.name,
        kind: r.kind,
        url: r.url,
        notify: r.notify,
        lastSeq: r.last_seq || 0,
        unread: r.unread || 0,
        mentions: r.mentions || 0,
      };
      if (old && old.lastSeq > e.lastSeq) {
        // Counted here from a frame the server's answer predates.
        Object.assign(e, { lastSeq: old.lastSeq, unread: old.unread, mentions: old.mentions });
      }
      if (e.slug === this.room) {
        e.unread = 0;
        e.mentions = 0;
      }
      this.applyRead(e); // a read mark the server may not have stored yet
      fresh.set(e.slug, e);
      this.show(e);
    }
    this.entries = fresh;
    const rooms_ = [];
    const directs = [];
    for (const e of fresh.values()) (e.kind === "direct" ? directs : rooms_).push(e.li);
    this.nav.querySelector("#sidebar-rooms").replaceChildren(...rooms_);
    this.nav.querySelector("#sidebar-directs").replaceChildren(...directs);
    this.onChange();
  }

  // Show an entry's counts, level and name.
  show(e) {
    const li = e.li;
    li.dataset.slug = e.slug;
    li.dataset.kind = e.kind;
    li.dataset.notify = e.notify;
    li.dataset.lastSeq = String(e.lastSeq);
    li.dataset.unread = String(e.unread);
    li.dataset.mentions = String(e.mentions);
    li.classList.toggle("muted", e.notify === "nothing");
    const a = li.querySelector("a");
    a.href = e.url;
    if (e.slug === this.room) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
    li.dataset.name = e.name;
    li.querySelector(".sb-name").textContent = e.name.replace(/^#/, ""); // style.css shows it
    const unread = li.querySelector(".sb-unread");
    unread.hidden = !e.unread;
    unread.querySelector(".sb-count").textContent = e.unread < 100 ? String(e.unread) : "99+";
    const mentions = li.querySelector(".sb-mentions");
    mentions.hidden = !e.mentions;
    mentions.querySelector(".sb-count").textContent = String(e.mentions);
    mentions.querySelector(".sb-mention-word").textContent =
      e.mentions === 1 ? " mention" : " mentions";
  }
}

// On a narrow screen the sidebar is a drawer: the room header's button opens it (focus goes to
// the current room's link), Escape, the backdrop or focus leaving it close it.
export class Drawer {
  constructor({ nav, button, backdrop, badge }) {
    this.nav = nav;
    this.button = button;
    this.backdrop = backdrop;
    this.badge = badge;
    button.addEventListener("click", () => (this.isOpen() ? this.close(true) : this.open()));
    backdrop.addEventListener("click", () => this.close(true));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen()) {
        event.preventDefault();
        this.close(true);
      }
    });
    nav.addEventListener("focusout", (event) => {
      const to = event.relatedTarget;
      if (this.isOpen() && to && !nav.contains(to) && to !== button) this.close(false);
    });
  }

  isOpen() {
    return this.nav.classList.contains("open");
  }

  open() {
    this.nav.classList.add("open");
    this.backdrop.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    const link = this.nav.querySelector('a[aria-current="page"]') || this.nav.querySelector("a");
    if (link) link.focus();
  }

  close(returnFocus) {
    this.nav.classList.remove("open");
    this.backdrop.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (returnFocus) this.button.focus();
  }

  // The unread messages elsewhere, on the button (seen while the drawer is closed).
  setUnread(count) {
    this.badge.hidden = !count;
    const number = document.createElement("span");
    number.textContent = count < 100 ? String(count) : "99+";
    const words = document.createElement("span");
    words.className = "visually-hidden";
    words.textContent = " unread";
    this.badge.replaceChildren(number, words);
  }
}

// Keep the sidebar's scroll position from one room's page to the next (no jump on switching).
export function keepScroll(nav) {
  const key = "sidebar-scroll";
  const top = Number(sessionStorage.getItem(key));
  if (top) nav.scrollTop = top;
  window.addEventListener("pagehide", () => sessionStorage.setItem(key, String(nav.scrollTop)));
}
