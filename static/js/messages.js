// The message list's items, cloned from the page's <template id="message-template"> (rendered by
// the same Jinja macro as the history) and filled in with textContent and DOM nodes only.
import { setTime } from "./format.js";
import { setAvatar } from "./grouping.js";
import { fillFormatted } from "./markdown.js";
import { attachmentNode } from "./uploads.js";

export class Items {
  constructor(template, me) {
    const content = template.content;
    this.blank = content.querySelector("li.message:not(.deleted)");
    this.tombstone = content.querySelector("li.message.deleted");
    this.blankDivider = content.querySelector("li.divider");
    this.me = me;
  }

  // A message as the server sends it (seq, user, text, created_at, edited_at, deleted), and
  // whether its author's account was deactivated (from the history page's `deactivated`).
  message(m, authorGone = false) {
    const li = (m.deleted ? this.tombstone : this.blank).cloneNode(true);
    li.classList.toggle("mine", m.user === this.me);
    li.dataset.seq = String(m.seq);
    li.dataset.user = m.user;
    li.tabIndex = -1; // focusable by the list's arrows (listnav.js), not a Tab stop
    li.querySelector(".author").textContent = m.user;
    setAvatar(li.querySelector(".avatar"), m.user);
    if (!authorGone) li.querySelector(".gone").remove();
    setTime(li.querySelector("time"), m.created_at);
    if (!m.deleted) {
      fillFormatted(li.querySelector(".text"), m.text);
      if (!m.edited_at) li.querySelector(".edited").remove();
      if (m.attachment) li.append(attachmentNode(m.attachment));
    }
    return li;
  }

  // The "New messages" line above the first unread one.
  divider() {
    const li = this.blankDivider.cloneNode(true);
    li.id = "unread-divider"; // the template's copy has none: one id per page
    return li;
  }

  // A line saying someone joined or left.
  event(text) {
    const li = document.createElement("li");
    li.className = "event";
    li.textContent = text;
    return li;
  }
}

// A message the server rendered (and formatted) into the page: show its time locally, and return
// what it says, as the server would send it.
export function upgrade(li) {
  const time = li.querySelector("time[datetime]");
  setTime(time, time.getAttribute("datetime"));
  const text = li.querySelector(".text");
  const m = {
    seq: Number(li.dataset.seq),
    user: li.dataset.user,
    text: text.dataset.text ?? text.textContent, // the raw text; a tombstone has none
    created_at: time.dateTime,
    deleted: li.classList.contains("deleted"),
  };
  text.removeAttribute("data-text"); // so that it looks like a live one
  const file = li.querySelector(".attachment-download");
  if (file) m.attachment = { name: file.textContent }; // what its actions' names mention
  return m;
}
