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

  send(text) {
    const clientId = newClientId();
    const created = new Date().toISOString();
    const li = this.render({ seq: 0, user: this.me, text: text, created_at: created });
    li.classList.add("pending");
    this.timeline.append(li);
    this.timeline.scrollToEnd();
    this.pending.set(clientId, { text: text, li: li });
    this.socket.send({ type: "message", text: text, client_id: clientId }); // or after the next hello
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
      this.socket.send({ type: "message", text: entry.text, client_id: clientId });
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
          this.socket.send({ type: "message", text: entry.text, client_id: frame.client_id });
        }
      }, wait);
    } else {
      this.pending.delete(frame.client_id);
      entry.li.remove();
    }
  }
}
