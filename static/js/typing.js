// "Someone is typing…": who else is typing (forgotten after 5 s of quiet or when their message
// arrives), and telling the others, at most every 3 s, while this person types.

export class Typists {
  constructor(line) {
    this.line = line;
    this.timers = new Map(); // login -> timer that forgets them
  }

  start(user) {
    clearTimeout(this.timers.get(user));
    this.timers.set(user, setTimeout(() => this.stop(user), 5000));
    this.show();
  }

  stop(user) {
    if (!this.timers.has(user)) return;
    clearTimeout(this.timers.get(user));
    this.timers.delete(user);
    this.show();
  }

  show() {
    const names = [...this.timers.keys()];
    if (!names.length) this.line.textContent = "";
    else if (names.length === 1) this.line.textContent = names[0] + " is typing…";
    else if (names.length === 2) this.line.textContent = names.join(" and ") + " are typing…";
    else this.line.textContent = "Several people are typing…";
  }
}

export function announceTyping(input, socket) {
  let sentAt = 0;
  input.addEventListener("input", () => {
    if (input.value.trim() && Date.now() - sentAt >= 3000 && socket.send({ type: "typing" })) {
      sentAt = Date.now();
    }
  });
}
