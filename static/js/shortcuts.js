// Keyboard shortcuts of every page: "/" opens the search (or, on the search page, goes to its
// box), unless the person is typing in a field.

function typing(target) {
  if (!(target instanceof Element)) return false;
  return target.closest("input, textarea, select, [contenteditable]") !== null;
}

document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) {
    return;
  }
  if (typing(event.target)) return;
  event.preventDefault();
  const box = document.getElementById("search-q");
  if (box) {
    box.focus();
    box.select();
    return;
  }
  const link = document.getElementById("search-link");
  if (link) location.assign(link.href);
});
