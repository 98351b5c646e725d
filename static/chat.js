// The room list's times, and the chat page: live messages over /ws (see PROTOCOL.md), history on
// scroll, resume on reconnect, typing, read marks, edit and delete, links, title badge, notifications.
// Everything a person typed is rendered with textContent and DOM nodes only, never as HTML.
"use strict";

(function () {
  function setTime(el, iso, withDate) {
    const d = new Date(iso);
    el.dateTime = iso;
    el.textContent = withDate
      ? d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })
      : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    el.title = d.toLocaleString();
  }

  for (const el of document.querySelectorAll(".rooms time[datetime]")) {
    setTime(el, el.getAttribute("datetime"), true);
  }

  const root = document.getElementById("chat");
  if (!root) return;

  const room = root.dataset.room;
  const roomName = root.dataset.roomName;
  const me = root.dataset.user;
  const wsPath = root.dataset.wsUrl;
  const historyUrl = root.dataset.historyUrl;
  const editWindow = (Number(root.dataset.editWindow) || 0) * 1000;
  const list = document.getElementById("messages");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const online = document.getElementById("online");
  const status = document.getElementById("status");
  const notice = document.getElementById("notice");
  const typingLine = document.getElementById("typing");
  const notifyButton = document.getElementById("notify");
  const baseTitle = document.title;

  let lastSeq = Number(root.dataset.lastSeq) || 0;   // highest seq shown, with none missing below it
  let firstSeq = Number(root.dataset.firstSeq) || 0; // lowest seq shown
  let lastRev = Number(root.dataset.lastRev) || 0;   // highest edit/delete applied
  let readSent = Number(root.dataset.lastRead) || 0; // highest read mark sent to the server
  let hasMore = firstSeq > 1;
  let loadingOlder = false;
  let socket = null;
  let attempt = 0;
  let reconnectTimer = null;
  let readTimer = null;
  let typingSentAt = 0;
  let unseen = 0; // messages that arrived while the tab was hidden
  let helloRev = 0;
  const outbox = new Map(); // client_id -> {text, li}: sent, not yet acknowledged
  const typists = new Map(); // login -> timer that forgets them after 5 s of quiet

  const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
  const TRAILING = /[.,;:!?)\]}]+$/;

  function linkTo(raw) {
    let url;
    try {
      url = new URL(raw);
    } catch (e) {
      return null;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return null;
    const a = document.createElement("a");
    a.href = url.href;
    a.textContent = raw;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    return a;
  }

  function fillText(el, text) {
    // Plain text, with http(s) links as <a> elements built from DOM nodes.
    el.replaceChildren();
    let last = 0;
    for (const match of text.matchAll(LINK)) {
      const raw = match[0].replace(TRAILING, "");
      const link = linkTo(raw);
      if (!link) continue;
      el.append(text.slice(last, match.index), link);
      last = match.index + raw.length;
    }
    el.append(text.slice(last));
  }

  function changeable(m) {
    return m.user === me && m.seq > 0 && !m.deleted && Date.now() - Date.parse(m.created_at) < editWindow;
  }

  function actionButton(label, name, handler) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link-button";
    b.textContent = label;
    b.setAttribute("aria-label", name);
    b.addEventListener("click", handler);
    return b;
  }

  function addActions(li, m) {
    if (!changeable(m)) return;
    const actions = document.createElement("span");
    actions.className = "actions";
    actions.append(
      actionButton("Edit", "Edit message", () => startEdit(li, m)),
      actionButton("Delete", "Delete message", () => {
        if (window.confirm("Delete this message for everyone?")) {
          sendFrame({ type: "delete", seq: m.seq, client_id: newClientId() });
        }
      })
    );
    li.append(" ", actions);
    setTimeout(() => actions.remove(), editWindow - (Date.now() - Date.parse(m.created_at)));
  }

  function startEdit(li, m) {
    const text = li.querySelector(".text");
    const actions = li.querySelector(".actions");
    const box = document.createElement("textarea");
    box.className = "edit-box";
    box.value = m.text;
    box.maxLength = 2000;
    box.setAttribute("aria-label", "Edit message");
    const done = () => {
      box.replaceWith(text);
      if (actions) actions.hidden = false;
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        done();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        const value = box.value.trim();
        if (value && value !== m.text) sendFrame({ type: "edit", seq: m.seq, text: value, client_id: newClientId() });
        done();
      }
    });
    if (actions) actions.hidden = true;
    text.replaceWith(box);
    box.focus();
  }

  function messageItem(m) {
    const li = document.createElement("li");
    li.className = "message" + (m.user === me ? " mine" : "") + (m.deleted ? " deleted" : "");
    li.dataset.seq = String(m.seq);
    li.dataset.user = m.user;
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.user;
    const time = document.createElement("time");
    setTime(time, m.created_at);
    const text = document.createElement("span");
    text.className = "text";
    li.append(author, " ", time, " ", text);
    if (m.deleted) {
      text.classList.add("tombstone");
      text.textContent = "message deleted";
    } else {
      fillText(text, m.text);
      if (m.edited_at) {
        const edited = document.createElement("span");
        edited.className = "edited";
        edited.textContent = "(edited)";
        li.append(" ", edited);
      }
    }
    addActions(li, m);
    return li;
  }

  function noticeItem(textContent) {
    const li = document.createElement("li");
    li.className = "event";
    li.textContent = textContent;
    return li;
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function scrollToEnd() {
    list.scrollTop = list.scrollHeight;
  }

  function appendLive(el) {
    const stick = nearBottom();
    list.appendChild(el);
    if (stick) scrollToEnd();
  }

  function showMessage(m) {
    const pending = outbox.get(m.client_id);
    if (m.user === me && pending) {
      outbox.delete(m.client_id);
      pending.li.remove();
    }
    if (m.seq <= lastSeq) return; // already shown (resume overlap or a re-sent acknowledgement)
    if (m.seq > lastSeq + 1 && lastSeq > 0) {
      // A gap: reconnecting with after=lastSeq replays exactly what is missing.
      reconnectNow();
      return;
    }
    stopTyping(m.user);
    if (document.hidden && m.user !== me) {
      if (unseen === 0) {
        // The first message missed while away: the divider moves to just above it.
        const old = document.getElementById("unread-divider");
        if (old) old.remove();
        appendLive(divider());
      }
      unseen += 1;
      document.title = "(" + unseen + ") " + baseTitle;
      notify(m);
    }
    appendLive(messageItem(m));
    lastSeq = m.seq;
    if (!firstSeq) firstSeq = m.seq;
    markRead();
  }

  function applyChange(m) {
    lastRev = Math.max(lastRev, m.rev || 0);
    const old = list.querySelector('li.message[data-seq="' + m.seq + '"]');
    if (old) old.replaceWith(messageItem(m));
  }

  function divider() {
    const li = document.createElement("li");
    li.className = "divider";
    li.id = "unread-divider";
    li.setAttribute("role", "separator");
    const label = document.createElement("span");
    label.textContent = "New messages";
    li.append(label);
    return li;
  }

  function markRead() {
    // Read marks go to the server (unread counts on every device), at most every half second.
    if (document.hidden || readTimer || lastSeq <= readSent) return;
    readTimer = setTimeout(() => {
      readTimer = null;
      if (!document.hidden && lastSeq > readSent && sendFrame({ type: "read", seq: lastSeq })) {
        readSent = lastSeq;
      }
    }, 500);
  }

  function showTyping() {
    const names = [...typists.keys()];
    if (!names.length) typingLine.textContent = "";
    else if (names.length === 1) typingLine.textContent = names[0] + " is typing…";
    else if (names.length === 2) typingLine.textContent = names[0] + " and " + names[1] + " are typing…";
    else typingLine.textContent = "Several people are typing…";
  }

  function startTyping(user) {
    clearTimeout(typists.get(user));
    typists.set(user, setTimeout(() => stopTyping(user), 5000));
    showTyping();
  }

  function stopTyping(user) {
    if (!typists.has(user)) return;
    clearTimeout(typists.get(user));
    typists.delete(user);
    showTyping();
  }

  function notify(m) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const n = new Notification(m.user + " in #" + roomName, { body: m.text.slice(0, 200), tag: "chat-" + room });
    n.addEventListener("click", () => {
      window.focus();
      n.close();
    });
  }

  function sendFrame(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
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

  function setStatus(text) {
    status.textContent = text;
  }

  function showNotice(text) {
    notice.textContent = text;
  }

  function sendPending() {
    for (const [clientId, entry] of outbox) {
      sendFrame({ type: "message", text: entry.text, client_id: clientId });
    }
  }

  function newClientId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + "-" + Math.random().toString(36).slice(2);
  }

  async function reloadLatest(serverLast) {
    // After a `reset`: more was missed than can be replayed, so start again from the latest page.
    const res = await fetch(historyUrl + "?limit=50", { credentials: "same-origin" });
    if (!res.ok) throw new Error("history " + res.status);
    const page = await res.json();
    list.replaceChildren(...page.messages.map(messageItem));
    firstSeq = page.messages.length ? page.messages[0].seq : 0;
    lastSeq = Math.max(serverLast, page.messages.length ? page.messages[page.messages.length - 1].seq : 0);
    lastRev = Math.max(lastRev, helloRev); // the page is newer than the hello
    hasMore = page.has_more;
    scrollToEnd();
    markRead();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "hello":
        attempt = 0;
        helloRev = frame.last_rev || 0;
        setStatus("");
        setOnline(frame.online);
        sendPending();
        markRead();
        break;
      case "message":
        showMessage(frame);
        break;
      case "change":
        applyChange(frame);
        break;
      case "typing":
        if (frame.user !== me) startTyping(frame.user);
        break;
      case "presence":
        setOnline(frame.online);
        if (frame.user !== me) {
          appendLive(noticeItem(frame.user + (frame.event === "join" ? " joined" : " left")));
        }
        break;
      case "reset":
        reloadLatest(frame.last_seq).catch(() => reconnectNow());
        break;
      case "error":
        if (frame.client_id && outbox.has(frame.client_id)) {
          const entry = outbox.get(frame.client_id);
          if (frame.code === "unavailable" || frame.code === "rate_limited") {
            entry.li.classList.add("failed");
            const wait = (frame.retry_after || 3) * 1000;
            setTimeout(() => {
              if (outbox.has(frame.client_id)) {
                sendFrame({ type: "message", text: entry.text, client_id: frame.client_id });
              }
            }, wait);
          } else {
            outbox.delete(frame.client_id);
            entry.li.remove();
          }
        }
        showNotice(frame.message);
        break;
    }
  }

  function connect() {
    clearTimeout(reconnectTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({ room: room, after: String(lastSeq), rev: String(lastRev) });
    setStatus(attempt ? "reconnecting…" : "connecting…");
    const ws = new WebSocket(scheme + "//" + location.host + wsPath + "?" + params.toString());
    socket = ws;
    ws.addEventListener("message", (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code === 1008) {
        // The session ended (logout elsewhere, expiry): go to the login page.
        location.assign("/login?next=" + encodeURIComponent(location.pathname));
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    attempt += 1;
    const delay = Math.min(30000, 500 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
    setStatus("offline, reconnecting…");
    reconnectTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (socket) {
      const old = socket;
      socket = null;
      old.close(1000);
    }
    connect();
  }

  function send() {
    const text = input.value.trim();
    if (!text) return;
    const clientId = newClientId();
    const li = messageItem({ seq: 0, user: me, text: text, created_at: new Date().toISOString() });
    li.classList.add("pending");
    appendLive(li);
    scrollToEnd();
    outbox.set(clientId, { text: text, li: li });
    input.value = "";
    showNotice("");
    sendFrame({ type: "message", text: text, client_id: clientId }); // else after the next hello
  }

  async function loadOlder() {
    if (loadingOlder || !hasMore || !firstSeq) return;
    loadingOlder = true;
    try {
      const res = await fetch(historyUrl + "?before=" + firstSeq + "&limit=50", { credentials: "same-origin" });
      if (!res.ok) throw new Error("history " + res.status);
      const page = await res.json();
      const older = page.messages.filter((m) => m.seq < firstSeq);
      if (older.length) {
        const height = list.scrollHeight;
        list.prepend(...older.map(messageItem));
        list.scrollTop += list.scrollHeight - height; // keep what the reader was looking at in place
        firstSeq = older[0].seq;
      }
      hasMore = page.has_more && older.length > 0;
    } catch (e) {
      showNotice("Could not load older messages; scroll up to try again.");
    } finally {
      loadingOlder = false;
    }
  }

  // Server-rendered messages: local times, links, and edit/delete on one's own recent ones.
  for (const li of list.querySelectorAll("li.message")) {
    const time = li.querySelector("time[datetime]");
    setTime(time, time.getAttribute("datetime"));
    const text = li.querySelector(".text");
    const deleted = li.classList.contains("deleted");
    const m = { seq: Number(li.dataset.seq), user: li.dataset.user, text: text.textContent, created_at: time.dateTime, deleted: deleted };
    if (!deleted) fillText(text, m.text);
    addActions(li, m);
  }
  input.addEventListener("input", () => {
    if (input.value.trim() && Date.now() - typingSentAt >= 3000 && sendFrame({ type: "typing" })) {
      typingSentAt = Date.now();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) return;
    unseen = 0;
    document.title = baseTitle;
    markRead();
  });
  if (notifyButton && "Notification" in window && Notification.permission === "default") {
    notifyButton.hidden = false;
    // Asked only on this click, never on load.
    notifyButton.addEventListener("click", async () => {
      const answer = await Notification.requestPermission();
      notifyButton.hidden = answer !== "default";
      if (answer === "denied") showNotice("Notifications are blocked for this site in the browser's settings.");
    });
  }
  form.addEventListener("submit", (event) => {
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
    if (list.scrollTop < 60) loadOlder();
  });
  scrollToEnd();
  connect();
})();
