// Times in the reader's own time zone, and message text as DOM nodes with its http(s) links made
// clickable. Text is only ever set with textContent and text nodes, never parsed as HTML.

const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}]+$/;

// Show an ISO 8601 time in local time: hours and minutes, or the date too; the full one on hover.
export function setTime(el, iso, withDate = false) {
  const d = new Date(iso);
  el.dateTime = iso;
  el.textContent = withDate
    ? d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })
    : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  el.title = d.toLocaleString();
}

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

// Replace el's content with the plain text, its http(s) links as <a> elements.
export function fillText(el, text) {
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
