// Read marks: the highest seq shown goes to the server (unread counts on every device) while the
// page is visible, at most every half second.

export class Reads {
  constructor(socket, timeline, lastRead) {
    this.socket = socket;
    this.timeline = timeline;
    this.sent = lastRead; // highest read mark sent to the server
    this.timer = null;
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
