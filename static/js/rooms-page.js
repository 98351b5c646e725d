// The room list: each room's last activity in the reader's own time zone.
import { setTime } from "./format.js";

for (const el of document.querySelectorAll(".rooms time[datetime]")) {
  setTime(el, el.getAttribute("datetime"), true);
}
