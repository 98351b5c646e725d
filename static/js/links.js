// "Copy link" on every stored message: the address of the room opened at that message
// (/rooms/<slug>?at=<seq>), put on the clipboard, or shown selected when that is refused.

function showLink(notice, url) {
  const box = document.createElement("input");
  box.type = "text";
  box.readOnly = true;
  box.className = "copy-box";
  box.value = url;
  box.setAttribute("aria-label", "Link to the message");
  notice.replaceChildren("Copy this link: ", box);
  box.focus();
  box.select();
}

export function messageUrl(roomUrl, seq) {
  return new URL(roomUrl + "?at=" + seq, location.href).href;
}

// Give a message's <li> its "Copy link" button (not a pending one: it has no seq yet).
export function addCopyLink(li, m, roomUrl, notice) {
  if (!m.seq) return;
  const url = messageUrl(roomUrl, m.seq);
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link-button copy-link";
  b.textContent = "Copy link";
  b.setAttribute("aria-label", "Copy link to this message");
  b.addEventListener("click", async () => {
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard");
      await navigator.clipboard.writeText(url);
      notice.textContent = "Link copied: " + url;
    } catch (e) {
      showLink(notice, url);
    }
  });
  const span = document.createElement("span");
  span.className = "message-link";
  span.append(b);
  li.append(" ", span);
}
