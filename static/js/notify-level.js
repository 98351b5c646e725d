// The room header's "Notifications" menu: all messages, mentions only or nothing, stored through
// POST /rooms/{slug}/notify (see docs/PROTOCOL.md) as soon as one is chosen.

export const LEVEL_NAMES = { all: "All messages", mentions: "Mentions only", nothing: "Nothing" };

export class NotifyLevel {
  constructor({ menu, csrfToken, onChange, showNotice }) {
    this.menu = menu; // the <details>
    this.form = menu.querySelector("form");
    this.now = menu.querySelector(".notify-level-now");
    this.csrfToken = csrfToken;
    this.onChange = onChange;
    this.showNotice = showNotice;
    this.level = this.checked();
    this.form.addEventListener("change", () => this.choose(this.checked()));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.choose(this.checked());
    });
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) {
        event.preventDefault();
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
  }

  checked() {
    const radio = this.form.querySelector("input[name=level]:checked");
    return radio ? radio.value : "";
  }

  check(level) {
    for (const radio of this.form.querySelectorAll("input[name=level]")) {
      radio.checked = radio.value === level;
    }
  }

  async choose(level) {
    if (!level || level === this.level) return;
    const before = this.level;
    this.level = level;
    this.now.textContent = LEVEL_NAMES[level];
    this.onChange(level);
    try {
      const response = await fetch(this.form.action, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": this.csrfToken },
        body: new URLSearchParams({ level, csrf_token: this.csrfToken }),
      });
      if (!response.ok) throw new Error(String(response.status));
      const stored = (await response.json()).level;
      if (stored && stored !== level) this.set(stored);
    } catch (e) {
      this.set(before);
      this.showNotice("Could not change the notifications; try again.");
    }
  }

  // Show a level without storing it (the stored one, or the one before a failure).
  set(level) {
    this.level = level;
    this.check(level);
    this.now.textContent = LEVEL_NAMES[level];
    this.onChange(level);
  }
}
