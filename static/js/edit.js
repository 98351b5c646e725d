// Edit and Delete on one's own messages while the server still allows changing them (for
// editWindow ms after sending); an edit happens in place, in a textarea.
import { newClientId } from "./socket.js";

function actionButton(label, name, handler) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link-button";
  b.textContent = label;
  b.setAttribute("aria-label", name);
  b.addEventListener("click", handler);
  return b;
}

export class Controls {
  constructor({ me, editWindow, socket }) {
    this.me = me;
    this.editWindow = editWindow;
    this.socket = socket;
  }

  changeable(m) {
    const age = Date.now() - Date.parse(m.created_at);
    return m.user === this.me && m.seq > 0 && !m.deleted && age < this.editWindow;
  }

  // Give a message's <li> its controls, if it is one's own and still young enough.
  add(li, m) {
    if (!this.changeable(m)) return;
    const actions = document.createElement("span");
    actions.className = "actions";
    actions.append(
      actionButton("Edit", "Edit message", () => this.startEdit(li, m)),
      actionButton("Delete", "Delete message", () => {
        if (window.confirm("Delete this message for everyone?")) {
          this.socket.send({ type: "delete", seq: m.seq, client_id: newClientId() });
        }
      })
    );
    li.append(" ", actions);
    setTimeout(() => actions.remove(), this.editWindow - (Date.now() - Date.parse(m.created_at)));
  }

  startEdit(li, m) {
    const text = li.querySelector(".text");
    const actions = li.querySelector(".actions");
    const box = document.createElement("textarea");
    box.className = "edit-box";
    box.value = m.text;
    box.maxLength = 2000;
    box.setAttribute("aria-label", "Edit message");
    const done = () => {
      box.replaceWith(text);
      if (actions) actions.hidden = false;
      // A change that came meanwhile (another tab's edit) may be shown now: see chat-page.js.
      li.dispatchEvent(new CustomEvent("editend", { bubbles: true }));
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        done();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        const value = box.value.trim();
        if (value && value !== m.text) {
          this.socket.send({ type: "edit", seq: m.seq, text: value, client_id: newClientId() });
        }
        done();
      }
    });
    if (actions) actions.hidden = true;
    text.replaceWith(box);
    box.focus();
  }
}
