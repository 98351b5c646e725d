// How the message list reads: a day separator ("Today", "Yesterday", "Tuesday, 1 December 2026",
// in local time) above each day's first message, and consecutive messages of one person (within
// GROUP_MS, on one day, with nothing between them) grouped under the first one's name and avatar.
// regroup() works on whatever the list holds, so server-rendered, live, history and re-rendered
// items all end up the same; it changes only what is wrong, so calling it again changes nothing.

const GROUP_MS = 5 * 60 * 1000;
export const PALETTE_SIZE = 8; // as common/avatars.py

// The initials and palette index of a login's avatar, as common/avatars.py computes them.
export function avatarOf(login) {
  const parts = login.split(/[._-]+/).filter((p) => p);
  const initials = parts
    .slice(0, 2)
    .map((p) => p[0])
    .join("")
    .toUpperCase();
  let h = 0;
  for (let i = 0; i < login.length; i += 1) h = (h * 31 + login.charCodeAt(i)) % 4294967296;
  return { initials, colour: h % PALETTE_SIZE };
}

// Fill a message's avatar (the template's blank one) for a login.
export function setAvatar(el, login) {
  const { initials, colour } = avatarOf(login);
  el.textContent = initials;
  el.className = "avatar avatar-" + colour;
}

function dayKey(d) {
  return d.getFullYear() + "-" + (d.getMonth() + 1) + "-" + d.getDate();
}

// "Today", "Yesterday" or the full local date of a day.
export function dayLabel(d, now = new Date()) {
  if (dayKey(d) === dayKey(now)) return "Today";
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (dayKey(d) === dayKey(yesterday)) return "Yesterday";
  return d.toLocaleDateString([], {
    weekday: "long",
    day: "numeric",
    month: "long",
    year: "numeric",
  });
}

function createdAt(li) {
  const time = li.querySelector(":scope > time");
  const t = time ? Date.parse(time.dateTime || time.getAttribute("datetime")) : NaN;
  return Number.isNaN(t) ? null : new Date(t);
}

function separator(key, label) {
  const li = document.createElement("li");
  li.className = "day";
  li.dataset.day = key;
  const span = document.createElement("span");
  span.textContent = label;
  li.append(span);
  return li;
}

export function regroup(list) {
  const now = new Date();
  let day = null; // the day of the last message seen
  const kept = new Set();
  for (const el of [...list.children]) {
    if (!el.matches("li.message")) continue;
    if (el.getAttribute("tabindex") !== "-1") el.setAttribute("tabindex", "-1"); // see listnav.js
    const at = createdAt(el);
    if (!at) continue;
    const key = dayKey(at);
    // The separator goes above an unread divider that is right above the day's first message.
    let anchor = el;
    while (anchor.previousElementSibling && anchor.previousElementSibling.matches("li.divider")) {
      anchor = anchor.previousElementSibling;
    }
    if (key !== day) {
      const label = dayLabel(at, now);
      let sep = anchor.previousElementSibling;
      if (!sep || !sep.matches("li.day") || sep.dataset.day !== key) {
        sep = separator(key, label);
        anchor.before(sep);
      } else if (sep.textContent !== label) {
        sep.firstChild.textContent = label;
      }
      kept.add(sep);
      day = key;
    } else {
      // A separator left from before older messages were added above: this day began earlier.
      while (anchor.previousElementSibling && anchor.previousElementSibling.matches("li.day")) {
        anchor.previousElementSibling.remove();
      }
    }
    const prev = el.previousElementSibling;
    const prevAt = prev && prev.matches("li.message") ? createdAt(prev) : null;
    const grouped =
      prevAt !== null &&
      prev.dataset.user === el.dataset.user &&
      at - prevAt < GROUP_MS &&
      at - prevAt > -GROUP_MS;
    if (el.classList.contains("grouped") !== grouped) el.classList.toggle("grouped", grouped);
  }
  for (const sep of list.querySelectorAll(":scope > li.day")) {
    if (!kept.has(sep)) sep.remove();
  }
}
