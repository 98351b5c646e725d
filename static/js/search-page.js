// The search page: asks /search/messages for results and shows them, newest first, each with its
// room, author, date and the matching words in <mark> elements (DOM nodes only, never HTML).
import { setTime } from "./format.js";

const root = document.getElementById("search-page");
const form = document.getElementById("search-form");
const input = document.getElementById("search-q");
const list = document.getElementById("search-results");
const status = document.getElementById("search-status");
const more = document.getElementById("search-more");
const room = form.querySelector("input[name=room]");

let cursor = null; // the `before` of the next page
let asked = ""; // the query shown
let loading = false;
let generation = 0; // a new search outdates the answers to earlier ones

// The text as nodes, the spans [start, end) (UTF-16 offsets, as the server sends) in <mark>s.
export function highlighted(text, spans) {
  const nodes = [];
  let last = 0;
  for (const [start, end] of spans) {
    if (start < last || end <= start || end > text.length) continue;
    if (start > last) nodes.push(document.createTextNode(text.slice(last, start)));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(start, end);
    nodes.push(mark);
    last = end;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}

function result(r) {
  const li = document.createElement("li");
  li.className = "search-result";
  li.dataset.room = r.room;
  li.dataset.seq = String(r.seq);
  const a = document.createElement("a");
  a.href = r.url;
  const where = document.createElement("span");
  where.className = "result-room";
  where.textContent = r.room_kind === "direct" ? r.room_name : "#" + r.room_name;
  const author = document.createElement("span");
  author.className = "author";
  author.textContent = r.user;
  const time = document.createElement("time");
  setTime(time, r.created_at, true);
  const text = document.createElement("p");
  text.className = "text";
  text.append(...highlighted(r.text, r.highlights || []));
  a.append(where, " ", author, " ", time, text);
  li.append(a);
  return li;
}

async function load(fresh) {
  if (!asked || (loading && !fresh)) return;
  loading = true;
  const mine = ++generation;
  const params = new URLSearchParams({ q: asked });
  if (room && room.value) params.set("room", room.value);
  if (!fresh && cursor) params.set("before", cursor);
  if (fresh) {
    list.replaceChildren();
    cursor = null;
  }
  status.textContent = "Searching…";
  try {
    const res = await fetch(root.dataset.resultsUrl + "?" + params.toString(), {
      credentials: "same-origin",
    });
    const body = await res.json().catch(() => ({}));
    if (mine !== generation) return; // a newer search was asked meanwhile
    if (!res.ok) {
      // No JSON: refused before the app read it (a URL above 8 KiB: a very long query).
      const fallback = res.status === 400 ? "The query is too long." : "The search failed; try again.";
      status.textContent = body.error || fallback;
      more.hidden = true;
      return;
    }
    list.append(...body.results.map(result));
    cursor = body.before;
    more.hidden = !body.has_more;
    const count = list.children.length;
    // A page checks a bounded number of candidates: none found yet may still mean more further back.
    if (count) status.textContent = "";
    else status.textContent = body.has_more ? "Nothing found yet: More looks further back." : "Nothing found.";
  } catch (e) {
    if (mine === generation) {
      status.textContent = "The search failed; check the connection and try again.";
    }
  } finally {
    if (mine === generation) loading = false;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  asked = input.value.trim();
  const url = new URL(location.href);
  url.searchParams.set("q", asked);
  history.replaceState(null, "", url);
  if (asked) load(true);
  else status.textContent = "Give at least one word to look for.";
});
more.addEventListener("click", () => load(false));
asked = input.value.trim();
if (asked) load(true);
