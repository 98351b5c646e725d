// Reactions: chips under a message (emoji, count; pressed when one's own) that toggle one's
// reaction, and a small picker of recent emoji (or a short text). The server answers every
// toggle with a `change` frame, which re-renders the message; nothing is changed before that.
import { newClientId } from "./socket.js";

const RECENT_KEY = "chat.recentReactions";
const DEFAULTS = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];
const RECENT_MAX = 8;
const TEXT_MAX = 16;

function recent() {
  try {
    const saved = JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
    if (Array.isArray(saved)) {
      const mine = saved.filter((e) => typeof e === "string" && e);
      return [...new Set([...mine, ...DEFAULTS])].slice(0, RECENT_MAX);
    }
  } catch {
    // unreadable or blocked storage: the defaults do
  }
  return DEFAULTS.slice(0, RECENT_MAX);
}

function remember(emoji) {
  const list = [emoji, ...recent().filter((e) => e !== emoji)].slice(0, RECENT_MAX);
  try {
    localStorage.setItem(RECENT_KEY, JSON.stringify(list));
  } catch {
    // private mode: not remembered, still sent
  }
}

// The chips of a message, as templates/_message.html renders them.
export function chips(reactions, me) {
  const box = document.createElement("span");
  box.className = "reactions";
  for (const r of reactions) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.dataset.emoji = r.emoji;
    b.setAttribute("aria-pressed", r.users.includes(me) ? "true" : "false");
    b.setAttribute("aria-label", r.emoji + " " + r.users.length + ": " + r.users.join(", "));
    b.title = r.users.join(", ");
    const emoji = document.createElement("span");
    emoji.className = "chip-emoji";
    emoji.textContent = r.emoji;
    const count = document.createElement("span");
    count.className = "chip-count";
    count.textContent = String(r.users.length);
    b.append(emoji, " ", count);
    box.append(b);
  }
  return box;
}

export class Reactions {
  constructor({ me, socket, list }) {
    this.me = me;
    this.socket = socket;
    this.picker = null;
    // One listener for every chip, server-rendered or live.
    list.addEventListener("click", (event) => {
      const chip = event.target.closest("button.chip");
      const li = chip && chip.closest("li.message");
      if (li) this.toggle(Number(li.dataset.seq), chip.dataset.emoji);
    });
  }

  toggle(seq, emoji) {
    if (!seq) return;
    remember(emoji);
    this.socket.send({ type: "react", seq, emoji, client_id: newClientId() });
  }

  // A live message's chips (a server-rendered one has them already).
  show(li, m) {
    if (m.deleted || !m.reactions || !m.reactions.length) return;
    const at = li.querySelector(".edited") || li.querySelector(".text, .edit");
    at.after(chips(m.reactions, this.me));
  }

  // New chips on a message left in place (one being edited).
  refresh(li, m) {
    const box = li.querySelector(".reactions");
    if (box) box.remove();
    this.show(li, m);
  }

  // The "React" button that opens the picker.
  button(li) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link-button react-button";
    b.textContent = "React";
    b.setAttribute("aria-label", "React: add a reaction");
    b.setAttribute("aria-haspopup", "true");
    b.setAttribute("aria-expanded", "false");
    b.addEventListener("click", () => this.open(li, b));
    return b;
  }

  // A message re-rendered by a `change`: keep the focus (`active`, taken before the old item
  // left the page) on its chip or button, and an open picker open, in the new item.
  carry(old, fresh, active) {
    const pickerHadFocus = this.picker && active && this.picker.el.contains(active);
    if (this.picker && old.contains(this.picker.el)) {
      const opener = fresh.querySelector(".react-button");
      if (opener) {
        opener.setAttribute("aria-expanded", "true");
        fresh.append(this.picker.el);
        this.picker.opener = opener;
      } else {
        this.picker.el.remove();
        this.picker = null;
      }
    }
    if (pickerHadFocus) {
      active.focus();
      return;
    }
    if (!active || !old.contains(active)) return;
    let target = null;
    if (active.matches("button.chip")) {
      target = [...fresh.querySelectorAll("button.chip")].find(
        (b) => b.dataset.emoji === active.dataset.emoji
      );
    }
    if (!target && active.matches("button.chip, .react-button")) {
      target = fresh.querySelector(".react-button");
    }
    if (target) target.focus();
  }

  close() {
    const picker = this.picker;
    if (!picker) return;
    this.picker = null;
    picker.opener.setAttribute("aria-expanded", "false");
    picker.el.remove();
    if (picker.opener.isConnected) picker.opener.focus();
  }

  open(li, opener) {
    const again = this.picker && this.picker.opener === opener;
    this.close();
    if (again) return;
    const el = document.createElement("div");
    el.className = "picker";
    el.setAttribute("role", "group");
    el.setAttribute("aria-label", "Pick a reaction");
    const pick = (emoji) => {
      this.close();
      this.toggle(Number(li.dataset.seq), emoji);
    };
    const options = recent().map((emoji) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "pick";
      b.textContent = emoji;
      b.setAttribute("aria-label", "React with " + emoji);
      b.addEventListener("click", () => pick(emoji));
      return b;
    });
    const own = document.createElement("input");
    own.type = "text";
    own.className = "pick-text";
    own.maxLength = TEXT_MAX;
    own.placeholder = "or type one";
    own.setAttribute("aria-label", "Your own reaction, up to 16 characters");
    own.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        const value = own.value.trim();
        if (value) pick(value);
      }
    });
    el.append(...options, own);
    // Arrows move between the options, Escape closes and gives the focus back.
    el.addEventListener("keydown", (event) => {
      const focusable = [...options, own];
      const i = focusable.indexOf(document.activeElement);
      if (event.key === "Escape") {
        event.preventDefault();
        this.close();
      } else if ((event.key === "ArrowRight" || event.key === "ArrowLeft") && i >= 0) {
        if (document.activeElement === own && own.value) return;
        event.preventDefault();
        const step = event.key === "ArrowRight" ? 1 : -1;
        focusable[(i + step + focusable.length) % focusable.length].focus();
      }
    });
    opener.setAttribute("aria-expanded", "true");
    li.append(el);
    this.picker = { el, opener };
    options[0].focus();
  }
}
