// Edit and Delete on one's own messages while the server still allows changing them (for
// editWindow ms after sending), in a "More actions" menu (a menu button: arrows move, Escape
// closes, the focus goes back). An edit happens in place (Save, Cancel; Enter, Escape); a delete
// is confirmed in the page's dialog. Both go through the outbox, which keeps them while offline.
import { TEXT_MAX, textLength } from "./composer.js";
import { confirmInDialog } from "./confirm.js";
import { fillFormatted } from "./markdown.js";

// 'your message from 10:32, "hello wor…"': what makes each action's name unique (the time alone
// is not: several messages are often sent in one minute).
export function describe(m, me) {
  const at = new Date(m.created_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const said = m.deleted ? "" : m.text || (m.attachment && m.attachment.name) || "";
  const text = said.replace(/\s+/g, " ").trim();
  const chars = Array.from(text);
  const words = chars.slice(0, 24).join("") + (chars.length > 24 ? "…" : "");
  const who = m.user === me ? "your" : m.user + "'s";
  return who + " message from " + at + (words ? ', "' + words + '"' : "");
}

function button(label, name, className) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  if (name) b.setAttribute("aria-label", name);
  return b;
}

let menuCount = 0;

export class Controls {
  constructor({ me, editWindow, outbox, dialog }) {
    this.me = me;
    this.editWindow = editWindow;
    this.outbox = outbox;
    this.dialog = dialog;
    this.menu = null; // {el, opener}
    document.addEventListener("click", (event) => {
      if (this.menu && !this.menu.el.contains(event.target) && event.target !== this.menu.opener) {
        this.closeMenu(false);
      }
    });
  }

  changeable(m) {
    const age = Date.now() - Date.parse(m.created_at);
    return m.user === this.me && m.seq > 0 && !m.deleted && age < this.editWindow;
  }

  // Give a message's <li> its "More actions" menu, if it is one's own and still young enough.
  add(li, m) {
    if (!this.changeable(m)) return;
    const actions = document.createElement("span");
    actions.className = "actions";
    const name = "More actions for " + describe(m, this.me);
    const more = button("⋯", name, "link-button more-button");
    more.setAttribute("aria-haspopup", "menu");
    more.setAttribute("aria-expanded", "false");
    more.addEventListener("click", () => {
      if (this.menu && this.menu.opener === more) this.closeMenu(true);
      else this.openMenu(li, m, more);
    });
    more.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.openMenu(li, m, more, event.key === "ArrowUp");
      }
    });
    actions.append(more);
    // In the floating bar with Reply and React when there is one (chat-page.js), else at the end.
    const bar = li.querySelector(".respond");
    (bar || li).append(" ", actions);
    setTimeout(() => {
      if (this.menu && this.menu.opener === more) this.closeMenu(false);
      actions.remove();
    }, this.editWindow - (Date.now() - Date.parse(m.created_at)));
  }

  find(seq) {
    return document.querySelector('#messages li.message[data-seq="' + seq + '"]');
  }

  closeMenu(focusOpener) {
    const menu = this.menu;
    if (!menu) return;
    this.menu = null;
    menu.opener.setAttribute("aria-expanded", "false");
    menu.el.remove();
    if (focusOpener && menu.opener.isConnected) menu.opener.focus();
  }

  openMenu(li, m, more, last = false) {
    this.closeMenu(false);
    const what = describe(m, this.me);
    const el = document.createElement("div");
    menuCount += 1;
    el.id = "message-menu-" + menuCount;
    el.className = "menu";
    el.setAttribute("role", "menu");
    el.setAttribute("aria-label", "Actions for " + what);
    const edit = button("Edit", "Edit " + what, "menu-item");
    const del = button("Delete", "Delete " + what, "menu-item danger");
    const items = [edit, del];
    for (const item of items) {
      item.setAttribute("role", "menuitem");
      item.tabIndex = -1;
    }
    edit.addEventListener("click", () => {
      this.closeMenu(false);
      this.startEdit(li, m);
    });
    del.addEventListener("click", () => {
      this.closeMenu(true);
      this.confirmDelete(li, m);
    });
    el.addEventListener("keydown", (event) => {
      const i = items.indexOf(document.activeElement);
      let to = null;
      if (event.key === "ArrowDown") to = items[(i + 1) % items.length];
      else if (event.key === "ArrowUp") to = items[(i - 1 + items.length) % items.length];
      else if (event.key === "Home") to = items[0];
      else if (event.key === "End") to = items.at(-1);
      else if (event.key === "Escape" || event.key === "Tab") {
        event.preventDefault();
        event.stopPropagation();
        this.closeMenu(true);
        return;
      }
      if (to) {
        event.preventDefault();
        to.focus();
      }
    });
    el.append(...items);
    more.setAttribute("aria-controls", el.id);
    more.setAttribute("aria-expanded", "true");
    more.after(el);
    this.menu = { el, opener: more };
    (last ? items.at(-1) : items[0]).focus();
  }

  async confirmDelete(li, m) {
    const ok = await confirmInDialog(this.dialog, {
      text: Array.from(m.text || "")
        .slice(0, 140)
        .join(""),
      // The message may have been rendered again meanwhile (an acknowledged edit, a reaction).
      fallback: () => {
        const now = li.isConnected ? li : this.find(m.seq);
        return now && (now.querySelector(".more-button") || now);
      },
    });
    if (!ok) return;
    this.outbox.change({ type: "delete", seq: m.seq }, li.isConnected ? li : this.find(m.seq));
  }

  startEdit(li, m) {
    const text = li.querySelector(".text");
    if (!text || li.querySelector(".edit")) return;
    const actions = li.querySelector(".actions");
    const what = describe(m, this.me);
    const form = document.createElement("div");
    form.className = "edit";
    const box = document.createElement("textarea");
    box.className = "edit-box";
    box.value = m.text;
    box.setAttribute("aria-label", "Edit " + what);
    const hint = document.createElement("span");
    hint.className = "edit-hint";
    hint.id = "edit-hint-" + m.seq;
    hint.textContent = "Enter to save · Esc to cancel";
    box.setAttribute("aria-describedby", hint.id);
    const save = button("Save", "Save the edit of " + what, "edit-save");
    const cancel = button("Cancel", "Cancel the edit of " + what, "secondary edit-cancel");
    const done = () => {
      form.replaceWith(text);
      if (actions) actions.hidden = false;
      const more = li.querySelector(".more-button");
      if (li.contains(document.activeElement) || document.activeElement === document.body) {
        (more || li).focus();
      }
      // A change that came meanwhile (another tab's edit) may be shown now: see chat-page.js.
      li.dispatchEvent(new CustomEvent("editend", { bubbles: true }));
    };
    const submit = () => {
      const value = box.value.trim();
      if (!value) {
        hint.textContent = "A message cannot be empty: Delete removes it. Esc to cancel";
        hint.classList.add("error");
        return;
      }
      const n = textLength(value);
      if (n > TEXT_MAX) {
        hint.textContent =
          n.toLocaleString() + " / " + TEXT_MAX.toLocaleString() + " characters: too long to save";
        hint.classList.add("error");
        return;
      }
      if (value !== m.text) {
        fillFormatted(text, value); // shown at once; the outbox marks it until it is saved
        this.outbox.change({ type: "edit", seq: m.seq, text: value }, li, m.text);
      }
      done();
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        done();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && event.target !== box) {
        event.preventDefault();
        done();
      }
    });
    save.addEventListener("click", submit);
    cancel.addEventListener("click", done);
    const buttons = document.createElement("span");
    buttons.className = "edit-buttons";
    buttons.append(save, " ", cancel, " ", hint);
    form.append(box, buttons);
    if (actions) actions.hidden = true;
    text.replaceWith(form);
    box.focus();
  }
}
