// Read marks: the highest seq shown goes to the server (unread counts on every device) while the
// page is visible, at most every half second.

export class Reads {
  constructor(socket, timeline, lastRead) {
    this.socket = socket;
    this.timeline = timeline;
    this.sent = lastRead; // highest read mark sent to the server
    this.timer = null;
    // Leaving the page (another room, a reload) within the half second: the mark still goes,
    // so that the sidebar's counts there do not count what was seen here.
    window.addEventListener("pagehide", () => this.flush());
  }

  // Send the mark being waited for now (seen while the page was visible: it is hidden by now).
  flush() {
    if (!this.timer) return;
    clearTimeout(this.timer);
    this.timer = null;
    const seq = this.timeline.lastSeq;
    if (seq > this.sent && this.socket.send({ type: "read", seq: seq })) this.sent = seq;
  }

  mark() {
    if (document.hidden || this.timer || this.timeline.lastSeq <= this.sent) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const seq = this.timeline.lastSeq;
      if (!document.hidden && seq > this.sent && this.socket.send({ type: "read", seq: seq })) {
        this.sent = seq;
      }
    }, 500);
  }
}
