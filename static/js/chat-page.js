// The chat page: builds the parts from the page's data attributes and routes each frame from the
// server (see docs/PROTOCOL.md) to them.
import { setupActivity } from "./activity.js";
import { Announcer } from "./announce.js";
import { offerNotifications } from "./attention.js";
import { Composer } from "./composer.js";
import { Controls, describe } from "./edit.js";
import { HistoryPages } from "./history.js";
import { enableCopyButtons } from "./markdown.js";
import { addCopyLink } from "./links.js";
import { listNavigation } from "./listnav.js";
import { markMentions, mentionedSeqs, MentionBox, roomCandidates } from "./mentions.js";
import { Items, upgrade } from "./messages.js";
import { Outbox } from "./outbox.js";
import { Reactions } from "./reactions.js";
import { Reads } from "./reads.js";
import { Replies } from "./replies.js";
import { RoomSocket } from "./socket.js";
import { Timeline } from "./timeline.js";
import { announceTyping, Typists } from "./typing.js";
import { setupViewer, Uploader } from "./uploads.js";

const root = document.getElementById("chat");
const data = root.dataset;
const me = data.user;
const list = document.getElementById("messages");
const input = document.getElementById("text");
const notice = document.getElementById("notice");
const status = document.getElementById("status");
const online = document.getElementById("online");
const offline = document.getElementById("offline");
const announcer = new Announcer(document.getElementById("announcer"), me);
const composer = new Composer(input, document.getElementById("counter"));

const showNotice = (text) => {
  notice.textContent = text;
};
const items = new Items(document.getElementById("message-template"), me);
const timeline = new Timeline(list, data);
const socket = new RoomSocket({
  path: data.wsUrl,
  room: data.room,
  timeline,
  onFrame,
  onStatus: (text) => {
    status.textContent = text;
    // In words, not only the grey note: down since it was up (the first connect says nothing).
    if (text === "") offline.textContent = "";
    else if (text !== "connecting…") {
      offline.textContent =
        "You are offline; reconnecting… What you send, edit or delete now is kept and sent " +
        "when the connection is back.";
    }
  },
});
const editWindow = (Number(data.editWindow) || 0) * 1000;
const reactions = new Reactions({ me, socket, list });
const replies = new Replies({
  list,
  timeline,
  roomUrl: data.roomUrl,
  input,
  bar: document.getElementById("replying"),
});
// Reply and React on every stored message that is not deleted.
const respond = (li, m) => {
  if (!(m.seq > 0) || m.deleted) return;
  const span = document.createElement("span");
  span.className = "respond";
  span.append(replies.button(li, m), reactions.button(li));
  li.append(" ", span);
};
// Each action's name says which message it is for (not "Reply to alice" on each of hers).
const nameActions = (li, m) => {
  const what = describe(m, me);
  const names = {
    ".reply-button": "Reply to " + what,
    ".react-button": "React to " + what,
    ".copy-link": "Copy link to " + what,
  };
  for (const [selector, name] of Object.entries(names)) {
    const b = li.querySelector(selector);
    if (b) b.setAttribute("aria-label", name);
  }
};
const render = (m, authorGone = false) => {
  const li = items.message(m, authorGone);
  replies.show(li, m);
  reactions.show(li, m);
  markMentions(li, m, me);
  respond(li, m);
  controls.add(li, m);
  addCopyLink(li, m, data.roomUrl, notice);
  nameActions(li, m);
  if (m.seq > 0) outbox.decorate(li, m);
  return li;
};
const outbox = new Outbox({ me, socket, timeline, render, onDiscard: () => input.focus() });
const controls = new Controls({
  me,
  editWindow,
  outbox,
  dialog: document.getElementById("delete-dialog"),
});
// Caught up with the room (a page opened at an older message): resume from the newest shown.
const goLive = () => socket.reconnectNow();
const historyPages = new HistoryPages({
  url: data.historyUrl,
  timeline,
  render,
  showNotice,
  onLive: goLive,
});
const reads = new Reads(socket, timeline, Number(data.lastRead) || 0);
const typists = new Typists(document.getElementById("typing"));
// The sidebar of rooms, the notify level, what notifies: see activity.js.
const { sidebar, attention } = setupActivity({ data, me, timeline, items, showNotice });

function showMessage(m) {
  outbox.acknowledge(m);
  if (!timeline.live) return; // the newer pages bring it, then the resume
  // Already shown: a resume's overlap, or an acknowledgement sent again.
  if (m.seq <= timeline.lastSeq) return;
  if (m.seq > timeline.lastSeq + 1 && timeline.lastSeq > 0) {
    // A gap: reconnecting with after=lastSeq replays exactly what is missing.
    socket.reconnectNow();
    return;
  }
  typists.stop(m.user);
  if (document.hidden && m.user !== me) attention.missed(m);
  timeline.appendMessage(render(m), m.seq);
  announcer.message(m);
  reads.mark();
}

function setOnline(logins) {
  online.replaceChildren(
    ...logins.map((login) => {
      const li = document.createElement("li");
      li.textContent = login;
      return li;
    })
  );
}

// The latest change of a message being edited here, shown once the edit box closes: while it is
// open the item is kept (with the person's text), its reactions refreshed.
const changedWhileEditing = new WeakMap();

function replaceItem(old, frame) {
  const fresh = render(frame, old.querySelector(".gone") !== null);
  fresh.dataset.rev = String(frame.rev || 0);
  const active = document.activeElement; // lost once the old item leaves the page
  old.replaceWith(fresh);
  reactions.carry(old, fresh, active);
  if (active && old.contains(active) && !fresh.contains(document.activeElement)) {
    // The focus stays on this message: on its menu button (an open menu closes with the old
    // item) if it has one still, else on it.
    const onMenu = active.matches('.more-button, [role="menuitem"]');
    const more = onMenu && fresh.querySelector(".more-button");
    (more || fresh).focus({ preventScroll: true });
  }
}

document.getElementById("messages").addEventListener("editend", (event) => {
  const li = event.target;
  const frame = changedWhileEditing.get(li);
  changedWhileEditing.delete(li);
  if (frame && li.isConnected) replaceItem(li, frame);
});

function onFrame(frame) {
  switch (frame.type) {
    case "hello":
      setOnline(frame.online);
      outbox.resendAll();
      reads.mark();
      sidebar.refresh(); // what the other rooms had while this socket was not there
      break;
    case "activity": {
      const entry = sidebar.activity(frame);
      if (entry) attention.elsewhere(entry, frame);
      break;
    }
    case "read":
      sidebar.read(frame);
      break;
    case "message":
      showMessage(frame);
      break;
    case "change": {
      outbox.changed(frame);
      // Not live: this socket resumed no changes, so the page's rev stays what it resumes from.
      if (timeline.live) timeline.lastRev = Math.max(timeline.lastRev, frame.rev || 0);
      const old = timeline.find(frame.seq);
      // Processes publish changes as they finish them, so an older state of a message can
      // arrive after a newer one: the highest rev shown wins.
      if (old && Number(old.dataset.rev || 0) > (frame.rev || 0)) break;
      if (old && old.querySelector("textarea.edit-box") && !frame.deleted) {
        reactions.refresh(old, frame); // being edited here: keep the edit, show the reactions
        old.dataset.rev = String(frame.rev || 0);
        changedWhileEditing.set(old, frame);
      } else if (old) {
        changedWhileEditing.delete(old);
        replaceItem(old, frame);
      }
      replies.update(frame);
      break;
    }
    case "typing":
      if (frame.user !== me) typists.start(frame.user);
      break;
    case "presence":
      setOnline(frame.online);
      if (frame.user !== me) {
        timeline.append(items.event(frame.user + (frame.event === "join" ? " joined" : " left")));
      }
      break;
    case "reset":
      historyPages
        .latest(frame.last_seq, socket.helloRev)
        .then(() => reads.mark())
        .catch(() => socket.reconnectNow());
      break;
    case "error":
      outbox.refused(frame);
      showNotice(frame.message);
      break;
  }
}

// Leave a page opened at an older message for the newest ones, and resume the socket there.
function catchUp() {
  return historyPages.latest(0, 0).then(() => {
    timeline.live = true;
    goLive();
  });
}

function send() {
  const text = input.value.trim();
  if (!text) return;
  const refusal = composer.refusal();
  if (refusal) {
    showNotice(refusal); // the text stays as it is, to be shortened
    return;
  }
  input.value = "";
  composer.update();
  showNotice("");
  const replyTo = replies.take();
  if (timeline.live) {
    outbox.send(text, replyTo);
    return;
  }
  // Writing while reading older messages: back to the newest ones, resumed from there.
  catchUp()
    .then(() => outbox.send(text, replyTo))
    .catch(() => {
      input.value = text;
      composer.update();
      showNotice("Could not load the newest messages; try again.");
    });
}

// Server-rendered messages: local times, links, and edit/delete on one's own recent ones.
const mentioned = mentionedSeqs(data);
for (const li of list.querySelectorAll("li.message")) {
  const m = upgrade(li);
  markMentions(li, { ...m, mentions: mentioned.has(m.seq) ? [me] : [] }, me);
  respond(li, m);
  controls.add(li, m);
  addCopyLink(li, m, data.roomUrl, notice);
  nameActions(li, m);
}
listNavigation({ list, exit: input });
document.getElementById("skip-to-composer").addEventListener("click", (event) => {
  event.preventDefault();
  input.focus();
});
enableCopyButtons(list);
announceTyping(input, socket);
new MentionBox({ input, candidates: () => roomCandidates({ me, kind: data.roomKind, sidebar }) });
offerNotifications(document.getElementById("notify"), showNotice);
// The outbox lives in this page: leaving it with something unsent asks first, so that nothing
// kept while offline (or refused and not retried) is lost without the person's say.
window.addEventListener("beforeunload", (event) => {
  if (outbox.unsent()) event.preventDefault();
});
document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  attention.seen();
  reads.mark();
});
document.getElementById("send").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
const loadNewer = () => {
  if (timeline.live || !timeline.nearBottom()) return;
  historyPages.newer().then((added) => {
    if (added) loadNewer();
  });
};
list.addEventListener("scroll", () => {
  if (list.scrollTop < 60) historyPages.older();
  loadNewer();
});
setupViewer(list);
new Uploader({
  url: data.uploadUrl,
  csrfToken: data.csrfToken,
  maxMb: Number(data.uploadMaxMb) || 25,
  list: document.getElementById("uploads"),
  showNotice,
  // Sent from a page opened at an older message: back to the newest ones, where it now is.
  onMessage: (m) => (timeline.live ? showMessage(m) : catchUp().catch(() => {})),
}).attach({
  button: document.getElementById("attach"),
  input: document.getElementById("file"),
  dropZone: root,
  textarea: input,
});
const target = timeline.find(Number(data.at) || 0);
if (target) {
  // Opened at a message (a search result, a copied link): show it in the middle, marked.
  target.classList.add("target");
  target.scrollIntoView({ block: "center" });
  loadNewer();
} else {
  timeline.scrollToEnd();
}
input.focus({ preventScroll: true });
socket.connect();
