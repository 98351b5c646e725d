// The chat page: live messages over /ws (see PROTOCOL.md), history on scroll, resume on reconnect.
// Everything a person typed is rendered with textContent only, never as HTML.
"use strict";

(function () {
  const root = document.getElementById("chat");
  if (!root) return;

  const room = root.dataset.room;
  const me = root.dataset.user;
  const wsPath = root.dataset.wsUrl;
  const historyUrl = root.dataset.historyUrl;
  const list = document.getElementById("messages");
  const form = document.getElementById("send");
  const input = document.getElementById("text");
  const online = document.getElementById("online");
  const status = document.getElementById("status");
  const notice = document.getElementById("notice");

  let lastSeq = Number(root.dataset.lastSeq) || 0;   // highest seq shown, with none missing below it
  let firstSeq = Number(root.dataset.firstSeq) || 0; // lowest seq shown
  let hasMore = firstSeq > 1;
  let loadingOlder = false;
  let socket = null;
  let attempt = 0;
  let reconnectTimer = null;
  const outbox = new Map(); // client_id -> {text, li}: sent, not yet acknowledged

  function localTime(iso) {
    const d = new Date(iso);
    return {
      short: d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
      long: d.toLocaleString(),
    };
  }

  function setTime(el, iso) {
    const t = localTime(iso);
    el.dateTime = iso;
    el.textContent = t.short;
    el.title = t.long;
  }

  function messageItem(m) {
    const li = document.createElement("li");
    li.className = "message" + (m.user === me ? " mine" : "");
    li.dataset.seq = String(m.seq);
    const author = document.createElement("span");
    author.className = "author";
    author.textContent = m.user;
    const time = document.createElement("time");
    setTime(time, m.created_at);
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text;
    li.append(author, " ", time, " ", text);
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
    appendLive(messageItem(m));
    lastSeq = m.seq;
    if (!firstSeq) firstSeq = m.seq;
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
      socket.send(JSON.stringify({ type: "message", text: entry.text, client_id: clientId }));
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
    hasMore = page.has_more;
    scrollToEnd();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "hello":
        attempt = 0;
        setStatus("");
        setOnline(frame.online);
        sendPending();
        break;
      case "message":
        showMessage(frame);
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
              if (outbox.has(frame.client_id) && socket && socket.readyState === WebSocket.OPEN) {
                socket.send(JSON.stringify({ type: "message", text: entry.text, client_id: frame.client_id }));
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
    const params = new URLSearchParams({ room: room, after: String(lastSeq) });
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
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", text: text, client_id: clientId }));
    } // otherwise it goes out after the next hello
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

  for (const el of list.querySelectorAll("time[datetime]")) setTime(el, el.getAttribute("datetime"));
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
