// The room's WebSocket (see docs/PROTOCOL.md): connects from where the timeline is (after, rev),
// reconnects with exponential backoff and jitter, and hands every frame to the page.

export function newClientId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return String(Date.now()) + "-" + Math.random().toString(36).slice(2);
}

export class RoomSocket {
  constructor({ path, room, timeline, onFrame, onStatus }) {
    this.path = path;
    this.room = room;
    this.timeline = timeline;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.ws = null;
    this.attempt = 0; // failed connections since the last hello
    this.timer = null;
    this.helloRev = 0; // the last_rev of the latest hello
  }

  connect() {
    clearTimeout(this.timer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({ room: this.room });
    if (this.timeline.live) {
      params.set("after", String(this.timeline.lastSeq));
      params.set("rev", String(this.timeline.lastRev));
    }
    this.onStatus(this.attempt ? "reconnecting…" : "connecting…");
    const ws = new WebSocket(scheme + "//" + location.host + this.path + "?" + params.toString());
    this.ws = ws;
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame.type === "hello") {
        this.attempt = 0;
        this.helloRev = frame.last_rev || 0;
        this.onStatus("");
      }
      this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (event.code === 1008 && event.reason === "left the room") {
        // They left this private room (here or in another tab): back to the room list, since
        // the login page would send them on to this room, now a 404 for them.
        location.assign("/");
        return;
      }
      if (event.code === 1008) {
        // The session ended (logout elsewhere, expiry, deactivation): go to the login page.
        location.assign("/login?next=" + encodeURIComponent(location.pathname));
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    this.attempt += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(this.attempt, 6)) * (0.5 + Math.random() / 2);
    this.onStatus("offline, reconnecting…");
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.close(1000);
    }
    this.connect();
  }

  // Send a frame if connected; false if not (the caller decides whether it matters).
  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
