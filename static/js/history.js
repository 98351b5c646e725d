// Pages of the room's history over HTTP: older messages when the list is scrolled to the top,
// and the latest page again after a `reset` (more was missed than the socket can replay).

const PAGE = 50;

export class HistoryPages {
  constructor({ url, timeline, render, showNotice, onLive }) {
    this.url = url;
    this.onLive = onLive; // called once the newer pages reached the room's newest message
    this.timeline = timeline;
    this.render = render;
    this.showNotice = showNotice;
    this.hasMore = timeline.firstSeq > 1;
    this.loading = false;
  }

  async page(query) {
    const res = await fetch(this.url + "?" + query, { credentials: "same-origin" });
    if (!res.ok) throw new Error("history " + res.status);
    return res.json();
  }

  // The page's messages as list items, their deactivated authors marked.
  items(page, messages) {
    const gone = new Set(page.deactivated || []);
    return messages.map((m) => this.render(m, gone.has(m.user)));
  }

  async older() {
    const timeline = this.timeline;
    if (this.loading || !this.hasMore || !timeline.firstSeq) return;
    this.loading = true;
    try {
      const page = await this.page("before=" + timeline.firstSeq + "&limit=" + PAGE);
      const older = page.messages.filter((m) => m.seq < timeline.firstSeq);
      if (older.length) {
        timeline.prepend(this.items(page, older));
        timeline.firstSeq = older[0].seq;
      }
      this.hasMore = page.has_more && older.length > 0;
    } catch (e) {
      this.showNotice("Could not load older messages; scroll up to try again.");
    } finally {
      this.loading = false;
    }
  }

  // Newer messages, for a page opened at an older one, until the newest: then it goes live.
  // True when a page was added (the caller may ask for the next one).
  async newer() {
    const timeline = this.timeline;
    if (this.loading || timeline.live) return false;
    this.loading = true;
    try {
      const page = await this.page("after=" + timeline.lastSeq + "&limit=" + PAGE);
      const newer = page.messages.filter((m) => m.seq > timeline.lastSeq);
      if (newer.length) {
        timeline.list.append(...this.items(page, newer));
        timeline.lastSeq = newer[newer.length - 1].seq;
      }
      if (!page.has_more) {
        timeline.live = true;
        this.onLive();
      }
      return newer.length > 0;
    } catch (e) {
      this.showNotice("Could not load newer messages; scroll down to try again.");
      return false;
    } finally {
      this.loading = false;
    }
  }

  // Start again from the latest page; serverLast and helloRev are from the reset and the hello.
  async latest(serverLast, helloRev) {
    const page = await this.page("limit=" + PAGE);
    const messages = page.messages;
    const timeline = this.timeline;
    timeline.replaceAll(this.items(page, messages));
    timeline.firstSeq = messages.length ? messages[0].seq : 0;
    const newest = messages.length ? messages[messages.length - 1].seq : 0;
    timeline.lastSeq = Math.max(serverLast, newest);
    timeline.lastRev = Math.max(timeline.lastRev, helloRev); // the page is newer than the hello
    this.hasMore = page.has_more;
    timeline.scrollToEnd();
  }
}
