// The chat page's view of the other rooms: builds the sidebar (and its phone drawer), the room
// header's notify level and what notifies (attention.js), tied together.
import { Attention } from "./attention.js";
import { NotifyLevel } from "./notify-level.js";
import { Drawer, keepScroll, Sidebar } from "./sidebar.js";

export function setupActivity({ data, me, timeline, items, showNotice }) {
  const nav = document.getElementById("sidebar");
  const sidebar = new Sidebar({
    nav,
    me,
    room: data.room,
    url: data.sidebarUrl,
    onChange: () => {
      attention.setOthers(sidebar.notifying());
      drawer.setUnread(sidebar.totalUnread());
    },
  });
  const drawer = new Drawer({
    nav,
    button: document.getElementById("sidebar-toggle"),
    backdrop: document.getElementById("sidebar-backdrop"),
    badge: document.querySelector("#sidebar-toggle .sb-total"),
  });
  const notifyLevel = new NotifyLevel({
    menu: document.getElementById("notify-level"),
    csrfToken: data.csrfToken,
    showNotice,
    onChange: (level) => {
      attention.level = level;
      sidebar.setLevel(data.room, level);
    },
  });
  const attention = new Attention({
    timeline,
    items,
    room: data.room,
    roomName: data.roomName,
    kind: data.roomKind,
    me,
    level: notifyLevel.level,
  });
  keepScroll(nav);
  sidebar.onChange(); // the counts the page was rendered with: in the title, on the button
  return { sidebar, attention };
}
