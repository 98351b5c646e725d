// The message list is one Tab stop: the arrows (and Home, End) move between its messages, Tab
// from a message goes through that message's own controls only, then on to the composer. So the
// composer is not behind every message's links, and every action is still within reach.

const TABBABLE = [
  "a[href]",
  "button:not([disabled])",
  'input:not([type="hidden"])',
  "textarea",
  "select",
  '[tabindex]:not([tabindex="-1"])',
].join(", ");

function tabbables(item) {
  return [...item.querySelectorAll(TABBABLE)].filter(
    (el) => !el.closest("[hidden]") && el.getClientRects().length > 0
  );
}

export function listNavigation({ list, exit }) {
  let current = null; // the message last focused, where Tab comes back into the list
  let tabbing = false; // the focus moves because of Tab (not a click, not the script)

  const messages = () => [...list.querySelectorAll(":scope > li.message")];
  const focusItem = (li) => {
    if (!li) return;
    li.focus({ preventScroll: true });
    li.scrollIntoView({ block: "nearest" });
  };

  document.addEventListener("keydown", (event) => {
    if (event.key === "Tab") tabbing = true;
  });
  document.addEventListener("keyup", () => {
    tabbing = false;
  });
  document.addEventListener("mousedown", () => {
    tabbing = false;
  });

  list.addEventListener("focusin", (event) => {
    const from = event.relatedTarget;
    // Tabbed into the list from outside (Shift+Tab from the composer lands on the last link of
    // the last message): the message last visited, or else the list itself, takes it instead.
    if (tabbing && event.target !== list && !(from && list.contains(from))) {
      const back = current && current.isConnected ? current : list;
      if (event.target !== back) {
        back.focus({ preventScroll: true });
        return;
      }
    }
    const item = event.target.closest("li.message");
    if (item) current = item;
  });

  list.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.key === "Tab" && !event.altKey && !event.ctrlKey && !event.metaKey) {
      if (target.closest('[role="menu"]')) return; // the menu closes itself (edit.js)
      const item = target === list ? null : target.closest("li.message");
      const controls = item ? tabbables(item) : [];
      const i = controls.indexOf(target);
      let next;
      if (event.shiftKey) {
        if (i > 0) next = controls[i - 1];
        else if (i === 0) next = item;
        else if (item && target === item) next = list;
        else return; // from the list itself, backwards: the page's order
      } else if (target === list || target === item) {
        next = controls[0] || exit;
      } else {
        next = i >= 0 && i + 1 < controls.length ? controls[i + 1] : exit;
      }
      event.preventDefault();
      next.focus();
      return;
    }
    if (target !== list && !target.matches("li.message")) return; // a control's own keys
    const all = messages();
    if (!all.length) return;
    const at = all.indexOf(target);
    const newest = all.at(-1); // where both arrows start from the list itself
    const to = {
      ArrowUp: at >= 0 ? all[Math.max(at - 1, 0)] : newest,
      ArrowDown: at >= 0 ? all[Math.min(at + 1, all.length - 1)] : newest,
      Home: all[0],
      End: newest,
      Escape: target !== list ? list : null,
    }[event.key];
    if (!to) return;
    event.preventDefault();
    if (to === list) list.focus();
    else focusItem(to);
  });
}
