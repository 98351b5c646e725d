// Mentions: a message that mentions me (its `mentions`, decided by the server) is marked, and so
// is each `@me` in its text; the composer completes logins after "@" (the ARIA combobox pattern,
// with a listbox popup).

// `@login` as chat/mentions.py reads it: not inside a word or an e-mail address; a trailing dot
// ends the sentence, not the login.
const MENTION = /(?<![\p{L}\p{N}_@.])@([A-Za-z0-9_.-]{3,33})(?![A-Za-z0-9_.-])/gu;
// The "@partial" just before the caret, being written.
const WRITING = /(?<![\p{L}\p{N}_@.])@([A-Za-z0-9_.-]{0,32})$/u;
const LOGIN = /^[A-Za-z0-9_.-]{3,32}$/;
const SHOWN_MAX = 8;

const same = (a, b) => a.toLowerCase() === b.toLowerCase();

export function mentionsMe(m, me) {
  return Array.isArray(m.mentions) && m.mentions.some((login) => same(login, me));
}

// Mark a message item that mentions me, and the `@me` in its text (outside code).
export function markMentions(li, m, me) {
  const mine = mentionsMe(m, me) && !m.deleted;
  li.classList.toggle("mentions-me", mine);
  const text = li.querySelector(".text");
  if (!mine || !text) return;
  const walker = document.createTreeWalker(text, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      node.parentElement.closest("code, pre, mark")
        ? NodeFilter.FILTER_REJECT
        : NodeFilter.FILTER_ACCEPT,
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const value = node.nodeValue;
    const parts = [];
    let last = 0;
    for (const match of value.matchAll(MENTION)) {
      const login = match[1].replace(/\.+$/, "");
      if (!same(login, me)) continue;
      parts.push(value.slice(last, match.index));
      const mark = document.createElement("mark");
      mark.className = "mention-me";
      mark.textContent = "@" + login;
      parts.push(mark);
      last = match.index + 1 + login.length;
    }
    if (!parts.length) continue;
    parts.push(value.slice(last));
    node.replaceWith(...parts.filter((p) => p !== ""));
  }
}

// The seqs of the server-rendered messages that mention me (the page's data-mentioned).
export function mentionedSeqs(data) {
  return new Set((data.mentioned || "").split(/\s+/).filter(Boolean).map(Number));
}

// Logins worth offering in this room, most likely first: for a direct conversation its people,
// for a private room its members, else the direct conversations' people too; then who is online
// and who wrote the messages shown (newest first). Never me.
export function roomCandidates({ me, kind, sidebar }) {
  const found = new Map();
  const add = (login) => {
    const name = (login || "").trim();
    if (LOGIN.test(name) && !same(name, me) && !found.has(name.toLowerCase())) {
      found.set(name.toLowerCase(), name);
    }
  };
  const texts = (selector) => [...document.querySelectorAll(selector)].map((el) => el.textContent);
  const here = sidebar.current();
  if (kind === "direct" && here) here.name.split(", ").forEach(add);
  texts("#members li").forEach(add);
  texts("#online li").forEach(add);
  const authors = [...document.querySelectorAll("#messages li.message[data-user]")];
  authors.reverse().forEach((li) => add(li.dataset.user));
  if (kind === "open") sidebar.partners().forEach(add);
  return [...found.values()];
}

let nextId = 0;

// Completes `@login` in a textarea: ArrowDown/ArrowUp choose, Enter or Tab pick, Escape closes,
// a click picks. The textarea is the combobox, the popup its listbox.
export class MentionBox {
  constructor({ input, candidates }) {
    this.input = input;
    this.candidates = candidates; // () => logins
    this.options = [];
    this.active = -1;
    this.start = -1; // where the "@" being completed is
    this.id = "mention-list";
    const list = document.createElement("ul");
    list.id = this.id;
    list.className = "mention-list";
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "People to mention");
    list.hidden = true;
    this.list = list;
    input.form.append(list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-haspopup", "listbox");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", this.id);
    input.addEventListener("input", () => this.update());
    input.addEventListener("click", () => this.update());
    input.addEventListener("blur", () => this.close());
    // Captured on the form, before the textarea's own keys (Enter sends): while the popup is
    // open, its keys are the popup's.
    input.form.addEventListener("keydown", (event) => this.key(event), true);
    list.addEventListener("mousedown", (event) => event.preventDefault()); // keep the focus
    list.addEventListener("click", (event) => {
      const option = event.target.closest('[role="option"]');
      if (option) this.pick(option.dataset.login);
    });
  }

  isOpen() {
    return !this.list.hidden;
  }

  // Look at what is before the caret: "@partial" opens (or refines) the list.
  update() {
    const caret = this.input.selectionStart;
    if (caret !== this.input.selectionEnd) return this.close();
    const match = WRITING.exec(this.input.value.slice(0, caret));
    if (!match) return this.close();
    const typed = match[1].toLowerCase();
    const logins = this.candidates()
      .filter((login) => login.toLowerCase().startsWith(typed))
      .slice(0, SHOWN_MAX);
    if (!logins.length) return this.close();
    this.start = caret - match[0].length;
    const keep = this.active >= 0 ? this.options[this.active] : null;
    this.options = logins;
    this.active = Math.max(0, keep ? logins.indexOf(keep) : 0);
    this.list.replaceChildren(
      ...logins.map((login) => {
        const li = document.createElement("li");
        li.id = "mention-option-" + nextId++;
        li.setAttribute("role", "option");
        li.dataset.login = login;
        li.textContent = login;
        return li;
      })
    );
    this.list.hidden = false;
    this.input.setAttribute("aria-expanded", "true");
    this.highlight();
  }

  highlight() {
    const items = this.list.children;
    for (let i = 0; i < items.length; i++) {
      items[i].setAttribute("aria-selected", i === this.active ? "true" : "false");
    }
    const active = items[this.active];
    if (active) {
      this.input.setAttribute("aria-activedescendant", active.id);
      active.scrollIntoView({ block: "nearest" });
    }
  }

  close() {
    if (!this.isOpen()) return;
    this.list.hidden = true;
    this.list.replaceChildren();
    this.options = [];
    this.active = -1;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  key(event) {
    if (event.target !== this.input || !this.isOpen() || event.isComposing) return;
    const count = this.options.length;
    let handled = true;
    if (event.key === "ArrowDown") {
      this.active = (this.active + 1) % count;
      this.highlight();
    } else if (event.key === "ArrowUp") {
      this.active = (this.active - 1 + count) % count;
      this.highlight();
    } else if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey) {
      this.pick(this.options[this.active]);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      handled = false;
    }
    if (handled) {
      event.preventDefault();
      event.stopPropagation();
    }
  }

  // Put "@login " in place of the "@partial".
  pick(login) {
    if (!login) return this.close();
    const input = this.input;
    const caret = input.selectionStart;
    const after = input.value.slice(caret);
    const inserted = "@" + login + (after.startsWith(" ") ? "" : " ");
    input.value = input.value.slice(0, this.start) + inserted + after;
    const at = this.start + inserted.length + (after.startsWith(" ") ? 1 : 0);
    input.setSelectionRange(at, at);
    this.close();
    input.focus();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }
}
