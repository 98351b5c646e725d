// What this page sent and the server has not acknowledged yet, by client_id: messages (shown as
// pending), edits and deletes (their message marked). Each is sent again after every hello, and
// retried when the server was unavailable or busy; one the server refused, or one that could not
// be sent, says so in words with Retry and Discard. Nothing is dropped without the person's say.
import { fillFormatted } from "./markdown.js";
import { newClientId } from "./socket.js";

const RETRYABLE = new Set(["unavailable", "rate_limited"]);

function stateButton(label, handler) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link-button";
  b.textContent = label;
  b.addEventListener("click", handler);
  return b;
}

export class Outbox {
  constructor({ me, socket, timeline, render, onDiscard }) {
    this.me = me;
    this.socket = socket;
    this.timeline = timeline;
    this.render = render;
    this.onDiscard = onDiscard; // where the focus goes when a failed message is discarded
    this.pending = new Map(); // client_id -> {text, li, replyTo, refused}
    this.changes = new Map(); // client_id -> {frame, seq, before}
  }

  // Whether anything sent here is still unacknowledged (pending, failed, or a kept change).
  unsent() {
    return this.pending.size > 0 || this.changes.size > 0;
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
    const entry = { text: text, li: li, replyTo: replyTo ? replyTo.seq : null, refused: false };
    this.pending.set(clientId, entry);
    this.trySend(clientId, entry);
  }

  frame(clientId, entry) {
    const frame = { type: "message", text: entry.text, client_id: clientId };
    if (entry.replyTo) frame.reply_to = entry.replyTo;
    return frame;
  }

  // Send it now if the socket is open (else after the next hello), and say which.
  trySend(clientId, entry) {
    entry.refused = false;
    if (this.socket.send(this.frame(clientId, entry))) {
      this.showState(clientId, entry, "Sending…", false);
    } else {
      this.showState(
        clientId,
        entry,
        "Not sent yet: offline. It is sent when the connection is back.",
        true
      );
    }
  }

  // The words (and, when it failed, Retry and Discard) under a pending message.
  showState(clientId, entry, text, failed) {
    const li = entry.li;
    const hadFocus = li.contains(document.activeElement) && document.activeElement !== li;
    let state = li.querySelector(".send-state");
    if (!state) {
      state = document.createElement("span");
      state.className = "send-state";
      li.append(" ", state);
    }
    li.classList.toggle("failed", failed);
    const words = document.createElement("span");
    words.className = "send-state-text";
    words.textContent = text;
    state.replaceChildren(words);
    if (failed) {
      const retry = stateButton("Retry", () => {
        this.trySend(clientId, entry);
        if (!this.socket.ws) this.socket.reconnectNow();
      });
      retry.setAttribute("aria-label", "Retry sending: " + entry.text.slice(0, 60));
      const discard = stateButton("Discard", () => {
        this.pending.delete(clientId);
        li.remove();
        if (this.onDiscard) this.onDiscard();
      });
      discard.setAttribute("aria-label", "Discard the unsent message: " + entry.text.slice(0, 60));
      state.append(" ", retry, " ", discard);
    }
    if (hadFocus) li.focus();
  }

  // A message from the server: if it is one of ours, its pending copy goes.
  acknowledge(m) {
    const entry = this.pending.get(m.client_id);
    if (m.user === this.me && entry) {
      this.pending.delete(m.client_id);
      const hadFocus = entry.li.contains(document.activeElement);
      entry.li.remove();
      if (hadFocus && this.onDiscard) this.onDiscard();
    }
  }

  resendAll() {
    for (const [clientId, entry] of this.pending) {
      if (!entry.refused) this.trySend(clientId, entry);
    }
    for (const entry of this.changes.values()) {
      this.socket.send(entry.frame);
      this.markChange(entry, "saving");
    }
  }

  // An edit or delete of one's own message (frame without client_id); `before`: the text an
  // edit replaces, shown again if the server refuses it.
  change(frame, li, before = null) {
    const clientId = newClientId();
    const entry = { frame: { ...frame, client_id: clientId }, seq: frame.seq, before: before };
    this.changes.set(clientId, entry);
    this.markChange(entry, this.socket.send(entry.frame) ? "saving" : "offline", li);
  }

  // The `change` frame that carries one of ours is its acknowledgement.
  changed(frame) {
    for (const [clientId, entry] of this.changes) {
      if (entry.seq !== frame.seq) continue;
      const done = entry.frame.type === "delete" ? frame.deleted : frame.text === entry.frame.text;
      if (done) this.changes.delete(clientId);
    }
  }

  // A message re-rendered (a reaction, someone's change) while an edit of ours waits: keep it
  // showing the edit, and marked.
  decorate(li, m) {
    for (const entry of this.changes.values()) {
      if (entry.seq !== m.seq || m.deleted) continue;
      if (entry.frame.type === "edit") fillFormatted(li.querySelector(".text"), entry.frame.text);
      this.markChange(entry, "saving", li);
    }
  }

  markChange(entry, how, li = this.timeline.find(entry.seq), reason = "") {
    if (!li) return;
    const edit = entry.frame.type === "edit";
    const words = {
      saving: edit ? "Saving the edit…" : "Deleting…",
      offline: edit
        ? "Edit kept here: it is sent when the connection is back."
        : "Delete kept here: it is sent when the connection is back.",
      refused: (edit ? "Edit not saved: " : "Not deleted: ") + reason,
    }[how];
    let state = li.querySelector(".change-state");
    if (!state) {
      state = document.createElement("span");
      state.className = "change-state";
      li.append(" ", state);
    }
    state.textContent = words;
    li.classList.toggle("change-failed", how === "refused");
  }

  // An error frame about one of ours: try again later if the server may take it then.
  refused(frame) {
    if (!frame.client_id) return;
    const wait = (frame.retry_after || 3) * 1000;
    const change = this.changes.get(frame.client_id);
    if (change) {
      if (RETRYABLE.has(frame.code)) {
        setTimeout(() => {
          if (this.changes.has(frame.client_id)) this.socket.send(change.frame);
        }, wait);
        return;
      }
      this.changes.delete(frame.client_id);
      const li = this.timeline.find(change.seq);
      if (li && change.before !== null && !li.classList.contains("deleted")) {
        fillFormatted(li.querySelector(".text"), change.before);
      }
      this.markChange(change, "refused", li, frame.message);
      return;
    }
    const entry = this.pending.get(frame.client_id);
    if (!entry) return;
    if (RETRYABLE.has(frame.code)) {
      this.showState(frame.client_id, entry, "Not sent: " + frame.message + " Trying again.", true);
      setTimeout(() => {
        const still = this.pending.get(frame.client_id);
        if (still && !still.refused) this.trySend(frame.client_id, still);
      }, wait);
    } else {
      entry.refused = true; // not sent again by itself: the same answer would come
      this.showState(frame.client_id, entry, "Not sent: " + frame.message, true);
    }
  }
}
