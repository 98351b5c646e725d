// Messages sent but not yet acknowledged, by client_id: shown as pending, sent again after every
// hello, retried when the server was unavailable or busy, dropped when it refused them.
import { newClientId } from "./socket.js";

export class Outbox {
  constructor({ me, socket, timeline, render }) {
    this.me = me;
    this.socket = socket;
    this.timeline = timeline;
    this.render = render;
    this.pending = new Map(); // client_id -> {text, li}
  }

  // replyTo: {seq, user, excerpt} of the message it answers, or null.
  send(text, replyTo = null) {
    const clientId = newClientId();
    const created = new Date().toISOString();
    const shown = { seq: 0, user: this.me, text: text, created_at: created, reply_to: replyTo };
    const li = this.render(shown);
    li.classList.add("pending");
    this.timeline.append(li);
    this.timeline.scrollToEnd();
    const entry = { text: text, li: li, replyTo: replyTo ? replyTo.seq : null };
    this.pending.set(clientId, entry);
    this.socket.send(this.frame(clientId, entry)); // or after the next hello
  }

  frame(clientId, entry) {
    const frame = { type: "message", text: entry.text, client_id: clientId };
    if (entry.replyTo) frame.reply_to = entry.replyTo;
    return frame;
  }

  // A message from the server: if it is one of ours, its pending copy goes.
  acknowledge(m) {
    const entry = this.pending.get(m.client_id);
    if (m.user === this.me && entry) {
      this.pending.delete(m.client_id);
      entry.li.remove();
    }
  }

  resendAll() {
    for (const [clientId, entry] of this.pending) {
      this.socket.send(this.frame(clientId, entry));
    }
  }

  // An error frame about one of ours: try again later if the server may take it then.
  refused(frame) {
    const entry = this.pending.get(frame.client_id);
    if (!frame.client_id || !entry) return;
    if (frame.code === "unavailable" || frame.code === "rate_limited") {
      entry.li.classList.add("failed");
      const wait = (frame.retry_after || 3) * 1000;
      setTimeout(() => {
        if (this.pending.has(frame.client_id)) {
          this.socket.send(this.frame(frame.client_id, entry));
        }
      }, wait);
    } else {
      this.pending.delete(frame.client_id);
      entry.li.remove();
    }
  }
}
