// The list of messages on screen and how far it reaches: the socket resumes from lastSeq and
// lastRev, the history pages back from firstSeq. Whatever changes the list, its day separators
// and groups follow (grouping.js).
import { regroup } from "./grouping.js";

export class Timeline {
  constructor(list, data) {
    this.list = list;
    regroup(list);
    new MutationObserver(() => regroup(list)).observe(list, { childList: true });
    this.lastSeq = Number(data.lastSeq) || 0; // highest seq shown, with none missing below it
    this.firstSeq = Number(data.firstSeq) || 0; // lowest seq shown
    this.lastRev = Number(data.lastRev) || 0; // highest edit/delete applied
    // False while a page opened at an older message (?at=) has not loaded up to the newest:
    // the socket then takes no `after`, and live messages wait for the newer pages.
    this.live = data.atEnd !== "0";
  }

  nearBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }

  // Add an item at the end, following it if the reader was at the end already.
  append(el) {
    const stick = this.nearBottom();
    this.list.appendChild(el);
    regroup(this.list);
    if (stick) this.scrollToEnd();
  }

  // Add the next message in order, seq being lastSeq + 1 (or the first one at all).
  appendMessage(li, seq) {
    this.append(li);
    this.lastSeq = seq;
    if (!this.firstSeq) this.firstSeq = seq;
  }

  // Add older items at the top, keeping what the reader was looking at in place.
  prepend(items) {
    const height = this.list.scrollHeight;
    this.list.prepend(...items);
    regroup(this.list); // now, not after the measure: separators and groups change the height
    this.list.scrollTop += this.list.scrollHeight - height;
  }

  replaceAll(items) {
    this.list.replaceChildren(...items);
  }

  find(seq) {
    return this.list.querySelector('li.message[data-seq="' + seq + '"]');
  }
}
