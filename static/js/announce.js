// The page's own live region: a short line per new message from someone else ("alice: hello"),
// and nothing for one's own echo, history pages, presence or edits, which the list itself does
// not announce (it is not a live region).

const KEEP = 5; // lines left in the region; older ones go (removals are not announced)
const EXCERPT = 140;

export class Announcer {
  constructor(region, me) {
    this.region = region;
    this.me = me;
  }

  // A new message, live (not from a history page, not a change).
  message(m) {
    if (m.user === this.me || m.deleted) return;
    let said = Array.from(m.text || "")
      .slice(0, EXCERPT)
      .join("");
    if (!said && m.attachment) said = "sent " + m.attachment.name;
    this.say(m.user + ": " + said);
  }

  say(text) {
    const line = document.createElement("p");
    line.textContent = text;
    this.region.append(line);
    while (this.region.children.length > KEEP) this.region.firstElementChild.remove();
  }
}
