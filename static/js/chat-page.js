// The chat page: builds the parts from the page's data attributes and routes each frame from the
// server (see docs/PROTOCOL.md) to them.
import { Attention, offerNotifications } from "./attention.js";
import { Controls } from "./edit.js";
import { HistoryPages } from "./history.js";
import { Items, upgrade } from "./messages.js";
import { Outbox } from "./outbox.js";
import { Reads } from "./reads.js";
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
  },
});
const editWindow = (Number(data.editWindow) || 0) * 1000;
const controls = new Controls({ me, editWindow, socket });
const render = (m, authorGone = false) => {
  const li = items.message(m, authorGone);
  controls.add(li, m);
  return li;
};
const outbox = new Outbox({ me, socket, timeline, render });
const historyPages = new HistoryPages({ url: data.historyUrl, timeline, render, showNotice });
const reads = new Reads(socket, timeline, Number(data.lastRead) || 0);
const typists = new Typists(document.getElementById("typing"));
const attention = new Attention({ timeline, items, room: data.room, roomName: data.roomName });

function showMessage(m) {
  outbox.acknowledge(m);
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

function onFrame(frame) {
  switch (frame.type) {
    case "hello":
      setOnline(frame.online);
      outbox.resendAll();
      reads.mark();
      break;
    case "message":
      showMessage(frame);
      break;
    case "change": {
      timeline.lastRev = Math.max(timeline.lastRev, frame.rev || 0);
      const old = timeline.find(frame.seq);
      if (old) old.replaceWith(render(frame, old.querySelector(".gone") !== null));
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

function send() {
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  showNotice("");
  outbox.send(text);
}

// Server-rendered messages: local times, links, and edit/delete on one's own recent ones.
for (const li of list.querySelectorAll("li.message")) controls.add(li, upgrade(li));
announceTyping(input, socket);
offerNotifications(document.getElementById("notify"), showNotice);
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
list.addEventListener("scroll", () => {
  if (list.scrollTop < 60) historyPages.older();
});
setupViewer(list);
new Uploader({
  url: data.uploadUrl,
  csrfToken: data.csrfToken,
  maxMb: Number(data.uploadMaxMb) || 25,
  list: document.getElementById("uploads"),
  showNotice,
  onMessage: showMessage,
}).attach({
  button: document.getElementById("attach"),
  input: document.getElementById("file"),
  dropZone: root,
  textarea: input,
});
timeline.scrollToEnd();
socket.connect();
