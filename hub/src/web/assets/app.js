// OPMAS web UI: the live regions, and nothing else. The pages work without
// it; with it, a region marked data-live="URL" follows the server-sent
// events at URL. EventSource reconnects by itself and sends the id of the
// last event it saw (Last-Event-ID), from which the server catches up.
//   event "row":    an HTML <tr> for the top of a <tbody data-live>
//   event "region": HTML that replaces the region's content
"use strict";
(function () {
  function status(region, state, text) {
    var el = document.getElementById(region.getAttribute("data-live-status") || "");
    if (el) { el.setAttribute("data-state", state); el.textContent = text; }
  }
  function follow(region) {
    var max = parseInt(region.getAttribute("data-live-max") || "100", 10);
    var source = new EventSource(region.getAttribute("data-live"));
    source.addEventListener("open", function () { status(region, "live", "Live"); });
    source.addEventListener("error", function () { status(region, "reconnecting", "Reconnecting…"); });
    source.addEventListener("row", function (e) {
      var t = document.createElement("template");
      t.innerHTML = e.data.trim();
      var row = t.content.firstElementChild;
      if (!row) { return; }
      var empty = region.querySelector("tr.empty");
      if (empty) { empty.remove(); }
      row.classList.add("fresh");
      region.insertBefore(row, region.firstElementChild);
      while (region.children.length > max) { region.lastElementChild.remove(); }
    });
    source.addEventListener("region", function (e) { region.innerHTML = e.data; });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(follow);
  });
})();
