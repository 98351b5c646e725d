// Files and images: send them by the Attach button, by dropping them on the room or by pasting
// them, with a progress bar and Cancel (XMLHttpRequest: fetch reports no upload progress); show
// a message's file as a thumbnail that opens the full view, or as a download link. DOM APIs
// only, never HTML strings.
import { newClientId } from "./socket.js";

const MB = 1024 * 1024;

// As Jinja's filesizeformat(binary=true) writes it in the server-rendered history.
function fileSize(bytes) {
  if (bytes >= 1024 * MB) return (bytes / (1024 * MB)).toFixed(1) + " GiB";
  if (bytes >= MB) return (bytes / MB).toFixed(1) + " MiB";
  if (bytes >= 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return bytes === 1 ? "1 Byte" : bytes + " Bytes";
}

// The markup of templates/_message.html's attachment_item, for a message's `attachment`.
export function attachmentNode(a) {
  const box = document.createElement("div");
  box.className = "attachment";
  if (a.thumb_url) {
    box.classList.add("image");
    const open = document.createElement("a");
    open.className = "attachment-open";
    open.href = a.url;
    open.target = "_blank";
    open.rel = "noopener";
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = a.thumb_url;
    img.alt = a.name;
    img.width = a.width;
    img.height = a.height;
    img.loading = "lazy";
    open.append(img);
    box.append(open);
  }
  const link = document.createElement("a");
  link.className = "attachment-download";
  link.href = a.url;
  link.download = a.name;
  link.textContent = a.name;
  const size = document.createElement("span");
  size.className = "size";
  size.textContent = fileSize(a.size);
  box.append(link, " ", size);
  return box;
}

// A click on a thumbnail opens the full image in a dialog (an animated GIF animates there).
export function setupViewer(list) {
  const dialog = document.getElementById("viewer");
  const image = document.getElementById("viewer-image");
  const download = document.getElementById("viewer-download");
  list.addEventListener("click", (event) => {
    const open = event.target.closest("a.attachment-open");
    if (!open || typeof dialog.showModal !== "function") return;
    event.preventDefault();
    const name = open.querySelector("img").alt;
    image.src = open.href;
    image.alt = name;
    download.href = open.href;
    download.download = name;
    dialog.showModal();
  });
  document.getElementById("viewer-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", () => image.removeAttribute("src"));
}

export class Uploader {
  constructor({ url, csrfToken, maxMb, list, showNotice, onMessage }) {
    this.url = url;
    this.csrfToken = csrfToken;
    this.maxBytes = maxMb * MB;
    this.list = list; // the <ul> of uploads under way
    this.showNotice = showNotice;
    this.onMessage = onMessage; // the stored message, also when the socket is down
  }

  // Wire the button, the room (drag and drop) and the message box (paste).
  attach({ button, input, dropZone, textarea }) {
    button.addEventListener("click", () => input.click());
    input.addEventListener("change", () => {
      for (const file of input.files) this.send(file);
      input.value = "";
    });
    dropZone.addEventListener("dragover", (event) => {
      if (!event.dataTransfer || !event.dataTransfer.types.includes("Files")) return;
      event.preventDefault();
      dropZone.classList.add("dropping");
    });
    dropZone.addEventListener("dragleave", (event) => {
      if (!dropZone.contains(event.relatedTarget)) dropZone.classList.remove("dropping");
    });
    dropZone.addEventListener("drop", (event) => {
      dropZone.classList.remove("dropping");
      if (!event.dataTransfer || event.dataTransfer.files.length === 0) return;
      event.preventDefault();
      for (const file of event.dataTransfer.files) this.send(file);
    });
    textarea.addEventListener("paste", (event) => {
      const files = event.clipboardData ? [...event.clipboardData.files] : [];
      if (files.length === 0) return; // plain text pastes as usual
      event.preventDefault();
      for (const file of files) this.send(file);
    });
  }

  send(file) {
    if (file.size > this.maxBytes) {
      this.showNotice(`${file.name} is too large: files can be at most ${this.maxBytes / MB} MB.`);
      return;
    }
    const item = document.createElement("li");
    item.className = "upload";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name || "pasted file";
    const bar = document.createElement("progress");
    bar.max = file.size || 1;
    bar.value = 0;
    bar.setAttribute("aria-label", "Sending " + name.textContent);
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "link-button upload-cancel";
    cancel.textContent = "Cancel";
    item.append(name, bar, cancel);
    this.list.append(item);

    const form = new FormData();
    form.append("client_id", newClientId());
    form.append("file", file, file.name || "pasted-image.png");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", this.url);
    xhr.setRequestHeader("X-CSRF-Token", this.csrfToken);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) {
        bar.max = event.total;
        bar.value = event.loaded;
      }
    });
    cancel.addEventListener("click", () => xhr.abort());
    xhr.addEventListener("abort", () => {
      item.remove();
      this.showNotice(`Sending ${name.textContent} was cancelled.`);
    });
    xhr.addEventListener("error", () => {
      item.remove();
      this.showNotice(`${name.textContent} could not be sent: the connection failed.`);
    });
    xhr.addEventListener("load", () => {
      item.remove();
      const body = xhr.response;
      if (xhr.status === 200 || xhr.status === 201) {
        this.showNotice("");
        if (body && body.message) this.onMessage(body.message);
      } else {
        const why = body && body.error ? body.error : `the server answered ${xhr.status}.`;
        this.showNotice(`${name.textContent} was not sent: ${why}`);
      }
    });
    xhr.send(form);
  }
}
