// While the tab is hidden: the count of missed messages in the title, the unread divider moved
// above the first of them, and notifications, which are asked for only on the button's click.

export class Attention {
  constructor({ timeline, items, room, roomName }) {
    this.timeline = timeline;
    this.items = items;
    this.room = room;
    this.roomName = roomName;
    this.baseTitle = document.title;
    this.unseen = 0; // messages that arrived while the tab was hidden
  }

  // A message from someone else arrived while the tab is hidden; called before it is shown.
  missed(m) {
    if (this.unseen === 0) {
      // The first message missed while away: the divider moves to just above it.
      const old = document.getElementById("unread-divider");
      if (old) old.remove();
      this.timeline.append(this.items.divider());
    }
    this.unseen += 1;
    document.title = "(" + this.unseen + ") " + this.baseTitle;
    this.notify(m);
  }

  // The tab is visible again.
  seen() {
    this.unseen = 0;
    document.title = this.baseTitle;
  }

  notify(m) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const n = new Notification(m.user + " in #" + this.roomName, {
      body: m.text.slice(0, 200),
      tag: "chat-" + this.room,
    });
    n.addEventListener("click", () => {
      window.focus();
      n.close();
    });
  }
}

// Show the button while the browser has not been told yes or no; ask only when it is clicked.
export function offerNotifications(button, showNotice) {
  if (!button || !("Notification" in window) || Notification.permission !== "default") return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const answer = await Notification.requestPermission();
    button.hidden = answer !== "default";
    if (answer === "denied") {
      showNotice("Notifications are blocked for this site in the browser's settings.");
    }
  });
}
