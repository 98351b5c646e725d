// A question in the page's own <dialog> (not window.confirm): modal, the focus kept inside it
// (Tab and Shift+Tab go round its buttons), Escape or Cancel says no, and the focus goes back
// to where it was, or to what `fallback()` returns when that left the page meanwhile.

export function confirmInDialog(dialog, { text, fallback }) {
  const yes = dialog.querySelector("[data-answer=yes]");
  const no = dialog.querySelector("[data-answer=no]");
  const opener = document.activeElement;
  dialog.querySelector(".dialog-text").textContent = text;
  return new Promise((resolve) => {
    let answer = false;
    const onKey = (event) => {
      if (event.key !== "Tab") return;
      const buttons = [...dialog.querySelectorAll("button")];
      const i = buttons.indexOf(document.activeElement);
      event.preventDefault();
      const step = event.shiftKey ? -1 : 1;
      buttons[(i + step + buttons.length) % buttons.length].focus();
    };
    const answerWith = (value) => () => {
      answer = value;
      dialog.close();
    };
    const onYes = answerWith(true);
    const onNo = answerWith(false);
    const onClose = () => {
      dialog.removeEventListener("keydown", onKey);
      yes.removeEventListener("click", onYes);
      no.removeEventListener("click", onNo);
      const back =
        opener && opener.isConnected && opener !== document.body ? opener : fallback && fallback();
      if (back && back.isConnected) back.focus();
      resolve(answer);
    };
    dialog.addEventListener("keydown", onKey);
    yes.addEventListener("click", onYes);
    no.addEventListener("click", onNo);
    dialog.addEventListener("close", onClose, { once: true });
    dialog.showModal();
    no.focus(); // the harmless answer first
  });
}
