// The composer's textarea: it grows with its text up to MAX_LINES (then scrolls), and a counter
// appears near the server's limit. Nothing is cut: over the limit, sending is refused.

export const TEXT_MAX = 2000; // chat/frames.py TEXT_MAX, in code points of the trimmed text
const SHOW_FROM = 1800;
const MAX_LINES = 6;

// The length the server counts: code points, after trimming.
export function textLength(text) {
  return Array.from(text.trim()).length;
}

export class Composer {
  constructor(input, counter) {
    this.input = input;
    this.counter = counter;
    input.addEventListener("input", () => this.update());
    this.update();
  }

  grow() {
    const input = this.input;
    const style = getComputedStyle(input);
    const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.45;
    const extra =
      parseFloat(style.paddingTop) +
      parseFloat(style.paddingBottom) +
      parseFloat(style.borderTopWidth) +
      parseFloat(style.borderBottomWidth);
    const max = line * MAX_LINES + extra;
    input.style.height = "auto";
    const wanted =
      input.scrollHeight + parseFloat(style.borderTopWidth) + parseFloat(style.borderBottomWidth);
    input.style.height = Math.min(wanted, max) + "px";
    input.style.overflowY = wanted > max ? "auto" : "hidden";
  }

  // After the text changed (typed, pasted, or set by the script).
  update() {
    this.grow();
    const n = textLength(this.input.value);
    const over = n > TEXT_MAX;
    this.counter.hidden = n < SHOW_FROM;
    this.counter.classList.toggle("over", over);
    this.counter.textContent = over
      ? n.toLocaleString() +
        " / " +
        TEXT_MAX.toLocaleString() +
        " characters: " +
        (n - TEXT_MAX).toLocaleString() +
        " too many"
      : n.toLocaleString() + " / " + TEXT_MAX.toLocaleString() + " characters";
  }

  // Why the text cannot be sent as it is, or null.
  refusal() {
    const n = textLength(this.input.value);
    if (n <= TEXT_MAX) return null;
    return (
      "Not sent: the message is " +
      n.toLocaleString() +
      " characters, the limit is " +
      TEXT_MAX.toLocaleString() +
      ". Shorten it by " +
      (n - TEXT_MAX).toLocaleString() +
      " to send it; nothing was cut."
    );
  }
}
