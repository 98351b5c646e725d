// What notifies, by each room's level ("all", "mentions", "nothing"): while the tab is hidden, the
// count of missed messages here in the title, the unread divider moved above the first of them,
// and notifications, which are asked for only on the button's click; from the other rooms (their
// `activity` frames), their count in the title always, and a notification while hidden.
import { mentionsMe } from "./mentions.js";
import { notifies } from "./sidebar.js";

export class Attention {
  constructor({ timeline, items, room, roomName, kind, me, level }) {
    this.timeline = timeline;
    this.items = items;
    this.room = room;
    this.roomName = roomName;
    this.kind = kind; // the room's: "open", "private" or "direct"
    this.me = me;
    this.level = level; // this room's notify level
    this.baseTitle = document.title;
    this.away = false; // a message arrived while the tab was hidden
    this.unseen = 0; // messages that arrived here while the tab was hidden, and notify
    this.others = 0; // what notifies in the other rooms (the sidebar's count)
  }

  // A message from someone else arrived while the tab is hidden; called before it is shown.
  missed(m) {
    if (!this.away) {
      // The first message missed while away: the divider moves to just above it.
      this.away = true;
      const old = document.getElementById("unread-divider");
      if (old) old.remove();
      this.timeline.append(this.items.divider());
    }
    if (!notifies(this.level, mentionsMe(m, this.me))) return;
    this.unseen += 1;
    this.showTitle();
    const title = this.kind === "direct" ? m.user : m.user + " in #" + this.roomName;
    this.notify(title, m.text.slice(0, 200), "chat-" + this.room, null);
  }

  // A message in another room (its sidebar entry): a notification if it notifies there.
  elsewhere(entry, frame) {
    if (!document.hidden || !notifies(entry.notify, frame.mention)) return;
    const direct = entry.kind === "direct";
    const title = direct ? frame.user : frame.user + " in #" + entry.name.replace(/^#/, "");
    const body = frame.mention ? "mentioned you" : direct ? "sent you a message" : "new message";
    this.notify(title, body, "chat-" + entry.slug, entry.url);
  }

  // The tab is visible again.
  seen() {
    this.away = false;
    this.unseen = 0;
    this.showTitle();
  }

  setOthers(count) {
    this.others = count;
    this.showTitle();
  }

  showTitle() {
    const count = this.unseen + this.others;
    document.title = count ? "(" + count + ") " + this.baseTitle : this.baseTitle;
  }

  notify(title, body, tag, url) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const n = new Notification(title, { body, tag });
    n.addEventListener("click", () => {
      window.focus();
      n.close();
      if (url) location.assign(url);
    });
  }
}

// Show the button while the browser has not been told yes or no; ask only when it is clicked.
// The page renders it with its space kept but unseen (class "idle"), so showing it moves nothing.
export function offerNotifications(button, showNotice) {
  if (!button || !("Notification" in window) || Notification.permission !== "default") return;
  button.classList.remove("idle");
  button.addEventListener("click", async () => {
    const answer = await Notification.requestPermission();
    button.classList.toggle("idle", answer !== "default");
    if (answer === "denied") {
      showNotice("Notifications are blocked for this site in the browser's settings.");
    }
  });
}
