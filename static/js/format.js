// Times in the reader's own time zone (message text is formatted by markdown.js).

// Show an ISO 8601 time in local time: hours and minutes, or the date too; the full one on hover.
export function setTime(el, iso, withDate = false) {
  const d = new Date(iso);
  el.dateTime = iso;
  el.textContent = withDate
    ? d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" })
    : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  el.title = d.toLocaleString();
}
