// Message formatting: the small Markdown subset of docs/PROTOCOL.md ("Formatting"), built as DOM
// nodes. common/markdown.py implements the same grammar for the server-rendered history, and
// tests/markdown_cases.json holds the cases both must render alike. Text only ever becomes text
// nodes; every scan is linear (anchored or forward-only searches, disjoint ranges).

const SPACES = "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff";
const INVISIBLE = "\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u206f\\u{e0000}-\\u{e007f}";
const SPACE = new RegExp("[" + SPACES + "]");
const SPECIAL = /`|\[|\*{2,}|_+|~{2,}|[hH][tT][tT][pP][sS]?:\/\//g;
const URL_RUN = new RegExp("[^" + SPACES + INVISIBLE + "\\x00-\\x1f\\x7f<>\"'`]*", "uy");
const LINK = new RegExp(
  "\\[([^\\[\\]\\n]+)\\]\\(([^" + SPACES + INVISIBLE + "\\x00-\\x1f\\x7f()\\[\\]<>\"'`]+)\\)",
  "uy"
);
const ORIGIN = /^[hH][tT][tT][pP][sS]?:\/\/([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::([0-9]{1,5}))?(?=[/?#]|$)/;
const NUMERIC_LABEL = /^(?:0[xX][0-9a-fA-F]*|[0-9]+)$/;
const DOTTED_QUAD =
  /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;
const FENCE_OPEN = /^```[^`]*$/;
const FENCE_CLOSE = /^```+[ \t]*$/;
const TRAILING = ".,;:!?)]}*_~";
const WORD = /[A-Za-z0-9]/;
const EMPHASIS = { "**": "strong", _: "em", "~~": "s" };
const LINK_ATTRS = [
  ["rel", "noopener noreferrer"],
  ["target", "_blank"],
];

// A node of the tree: a string, or { tag, attrs: [[name, value]...], children }.
const element = (tag, attrs, children) => ({ tag, attrs, children });
const isSpace = (c) => c === "" || SPACE.test(c);
const isWord = (c) => c !== "" && WORD.test(c);

// The host (and port) a link goes to, or null if it is not a link we make.
export function linkHost(url) {
  const origin = ORIGIN.exec(url);
  if (!origin) return null;
  const host = origin[1].toLowerCase();
  const port = origin[2];
  // A browser reads a host whose last label is a number as an IPv4 address (2130706433
  // is 127.0.0.1): only the plain dotted form is shown as it is.
  const labels = host.split(".");
  if (NUMERIC_LABEL.test(labels[labels.length - 1]) && !DOTTED_QUAD.test(host)) return null;
  if (port === undefined) return host;
  return Number(port) > 65535 ? null : host + ":" + port;
}

function bracketLink(label, url, host) {
  const note = element("span", [["class", "host"], ["dir", "ltr"]], ["(" + host + ")"]);
  return element("a", [["href", url], ...LINK_ATTRS], [element("bdi", [], [label]), " ", note]);
}

function autolink(url) {
  return element("a", [["href", url], ...LINK_ATTRS, ["dir", "ltr"]], [url]);
}

function trimTrailing(s) {
  let end = s.length;
  while (end > 0 && TRAILING.includes(s[end - 1])) end -= 1;
  return s.slice(0, end);
}

// Parse code spans, links, bare links and emphasis in a run of text.
export function parseInline(s) {
  const out = [];
  const opened = []; // [marker, index in out] of emphasis still open
  const special = new RegExp(SPECIAL.source, "g");
  let pos = 0;
  for (;;) {
    special.lastIndex = pos;
    const m = special.exec(s);
    if (!m) {
      out.push(s.slice(pos));
      break;
    }
    const start = m.index;
    const tok = m[0];
    out.push(s.slice(pos, start));
    const c = tok[0];
    if (c === "`") {
      const end = s.indexOf("`", start + 1);
      if (end > start + 1) {
        out.push(element("code", [], [s.slice(start + 1, end)]));
        pos = end + 1;
      } else if (end === start + 1) {
        out.push("``");
        pos = end + 1;
      } else {
        out.push("`");
        pos = start + 1;
      }
    } else if (c === "[") {
      LINK.lastIndex = start;
      const link = LINK.exec(s);
      const host = link ? linkHost(link[2]) : null;
      if (!host) {
        out.push("[");
        pos = start + 1;
      } else {
        out.push(bracketLink(link[1], link[2], host));
        pos = start + link[0].length;
      }
    } else if (c === "h" || c === "H") {
      if (start > 0 && isWord(s[start - 1])) {
        out.push(tok);
        pos = start + tok.length;
        continue;
      }
      URL_RUN.lastIndex = start;
      const raw = trimTrailing(URL_RUN.exec(s)[0]);
      out.push(linkHost(raw) ? autolink(raw) : raw);
      pos = start + raw.length;
    } else {
      pos = start + tok.length;
      if (!(tok in EMPHASIS)) {
        out.push(tok);
        continue;
      }
      const before = start > 0 ? s[start - 1] : "";
      const after = pos < s.length ? s[pos] : "";
      let canOpen = !isSpace(after);
      let canClose = !isSpace(before);
      if (c === "_") {
        canOpen = canOpen && !isWord(before);
        canClose = canClose && !isWord(after);
      }
      const at = opened.findIndex(([marker]) => marker === tok);
      if (at >= 0 && canClose) {
        const index = opened[at][1];
        opened.length = at;
        const children = out.splice(index);
        children.shift();
        out.push(element(EMPHASIS[tok], [], children));
      } else if (at < 0 && canOpen) {
        opened.push([tok, out.length]);
        out.push(tok);
      } else {
        out.push(tok);
      }
    }
  }
  return out;
}

function codeBlock(code) {
  const copy = element(
    "button",
    [["type", "button"], ["class", "copy-code"], ["aria-label", "Copy code"]],
    ["Copy"]
  );
  // Focusable: a line wider than the block scrolls, and a keyboard must reach it (WCAG 2.1.1).
  const pre = element("pre", [["tabindex", "0"]], [element("code", [], [code])]);
  return element("div", [["class", "code-block"]], [pre, copy]);
}

// Parse a message's text into the nodes that show it.
export function parse(text) {
  // Line breaks as the HTML parser leaves them in the history: \r\n and \r become \n.
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const nodes = [];
  let paragraph = [];
  const flush = (blockNext = true) => {
    // Blank lines next to a block are its margin, not text.
    while (blockNext && paragraph.length && !paragraph[paragraph.length - 1]) paragraph.pop();
    if (paragraph.length) nodes.push(...parseInline(paragraph.join("\n")));
    paragraph = [];
  };
  let afterBlock = false;
  const isItem = (line) => line.startsWith("- ") || line.startsWith("* ");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (FENCE_OPEN.test(line)) {
      flush();
      let j = i + 1;
      while (j < lines.length && !FENCE_CLOSE.test(lines[j])) j += 1;
      nodes.push(codeBlock(lines.slice(i + 1, j).join("\n")));
      i = j + 1;
    } else if (line.startsWith(">")) {
      flush();
      const body = [];
      for (; i < lines.length && lines[i].startsWith(">"); i += 1) {
        body.push(lines[i].slice(lines[i].startsWith("> ") ? 2 : 1));
      }
      nodes.push(element("blockquote", [], parseInline(body.join("\n"))));
    } else if (isItem(line)) {
      flush();
      const items = [];
      for (; i < lines.length && isItem(lines[i]); i += 1) {
        items.push(element("li", [], parseInline(lines[i].slice(2))));
      }
      nodes.push(element("ul", [], items));
    } else {
      if (line || !afterBlock) {
        paragraph.push(line);
        afterBlock = false;
      }
      i += 1;
      continue;
    }
    afterBlock = true;
  }
  flush(false);
  return nodes;
}

function build(node) {
  if (typeof node === "string") return document.createTextNode(node);
  const el = document.createElement(node.tag);
  for (const [name, value] of node.attrs) el.setAttribute(name, value);
  el.append(...node.children.map(build));
  return el;
}

// Replace el's content with the formatted text.
export function fillFormatted(el, text) {
  el.replaceChildren(...parse(text).map(build));
  el.normalize(); // adjacent text as one node, as the HTML parser makes it for the history
}

async function copy(code) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(code.textContent);
      return true;
    } catch (e) {
      // Refused (no permission, page not focused): fall back to copying the selection.
    }
  }
  const range = document.createRange();
  range.selectNodeContents(code);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  // Left selected if the browser refuses, so that Ctrl+C still works.
  return document.execCommand("copy");
}

// Make the code blocks' Copy buttons under root work, now and for messages added later.
export function enableCopyButtons(root) {
  root.addEventListener("click", async (event) => {
    const button = event.target.closest("button.copy-code");
    if (!button || !root.contains(button)) return;
    const done = await copy(button.parentElement.querySelector("pre code"));
    button.textContent = done ? "Copied" : "Press Ctrl+C";
    setTimeout(() => {
      button.textContent = "Copy";
    }, 2000);
  });
}
