// Replies: the quote of the message a reply answers (a link to it: on this page a jump and a
// highlight, else the room's view around it), the "Reply" action, and the composer's
// "Replying to X" line. Quotes follow the original: a `change` for it updates them.

const EXCERPT = 140; // characters (code points, as the server counts them)
const HIGHLIGHT_MS = 2000;

export function excerpt(m) {
  return m.deleted ? "message deleted" : Array.from(m.text || "").slice(0, EXCERPT).join("");
}

// The quote, as templates/_message.html renders it.
export function quote(reply, roomUrl) {
  const a = document.createElement("a");
  a.className = "quote";
  a.href = roomUrl + "?at=" + reply.seq;
  a.dataset.replyTo = String(reply.seq);
  const author = document.createElement("span");
  author.className = "quote-author";
  author.textContent = reply.user || "";
  const text = document.createElement("span");
  text.className = "quote-text";
  text.textContent = reply.excerpt;
  a.append(author, " ", text);
  return a;
}

export class Replies {
  constructor({ list, timeline, roomUrl, input, bar }) {
    this.list = list;
    this.timeline = timeline;
    this.roomUrl = roomUrl;
    this.input = input;
    this.bar = bar; // the composer's "Replying to X" line, hidden when not replying
    this.target = null; // {seq, user, excerpt} of the message being answered
    this.bar.querySelector(".reply-cancel").addEventListener("click", () => this.cancel());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.target) this.cancel();
    });
    list.addEventListener("click", (event) => {
      const link = event.target.closest("a.quote");
      if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) return;
      if (this.jump(Number(link.dataset.replyTo))) event.preventDefault();
    });
  }

  // Scroll to the original and highlight it; false when it is not on the page.
  jump(seq) {
    const li = this.timeline.find(seq);
    if (!li) return false;
    li.scrollIntoView({ block: "center" });
    li.classList.add("highlight");
    li.tabIndex = -1;
    li.focus({ preventScroll: true });
    setTimeout(() => li.classList.remove("highlight"), HIGHLIGHT_MS);
    return true;
  }

  // A live message's quote (a server-rendered one has it already).
  show(li, m) {
    if (m.deleted || !m.reply_to) return;
    li.querySelector(".text").before(quote(m.reply_to, this.roomUrl), " ");
  }

  // The original changed (edited, deleted, reacted to): its quotes show its current text.
  update(m) {
    for (const q of this.list.querySelectorAll('a.quote[data-reply-to="' + m.seq + '"]')) {
      q.querySelector(".quote-text").textContent = excerpt(m);
    }
    if (this.target && this.target.seq === m.seq) this.target.excerpt = excerpt(m);
  }

  button(li, m) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link-button reply-button";
    b.textContent = "Reply";
    b.setAttribute("aria-label", "Reply to " + m.user);
    b.addEventListener("click", () => this.start(m));
    return b;
  }

  start(m) {
    this.target = { seq: m.seq, user: m.user, excerpt: excerpt(m) };
    this.bar.querySelector(".reply-who").textContent = m.user;
    this.bar.hidden = false;
    this.input.focus();
  }

  cancel() {
    this.target = null;
    this.bar.hidden = true;
    this.input.focus();
  }

  // The message being answered, for the next message sent; replying ends with it.
  take() {
    const target = this.target;
    if (target) {
      this.target = null;
      this.bar.hidden = true;
    }
    return target;
  }
}
