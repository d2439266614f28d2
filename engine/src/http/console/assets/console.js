// Shows every <time datetime="..."> in the browser's time zone; the UTC instant stays in the
// element's title. Runs on load and after every htmx swap (live refreshes).
(function () {
  "use strict";
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        var format = {
          year: "numeric", month: "2-digit", day: "2-digit",
          hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
        };
        // Log lines keep their milliseconds.
        if (el.closest("pre.log")) { format.fractionalSecondDigits = 3; }
        // An hour and minute only where the page asks for it.
        if (el.getAttribute("data-format") === "hm") {
          format = { hour: "2-digit", minute: "2-digit", hour12: false };
        }
        el.textContent = d.toLocaleString(undefined, format);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  // The job form's preview fills the error slot under the field at fault (and empties the
  // others): mark each previewed field invalid exactly while its slot holds a message.
  function markFields() {
    document.querySelectorAll(".field-error[data-for]").forEach(function (slot) {
      var field = document.querySelector("form.job [name='" + slot.getAttribute("data-for") + "']");
      if (field) {
        field.setAttribute("aria-invalid", slot.textContent.trim() ? "true" : "false");
      }
    });
  }
  document.addEventListener("htmx:afterSettle", markFields);
  document.addEventListener("htmx:oobAfterSwap", markFields);
  document.addEventListener("htmx:afterSwap", function (e) { localize(e.target.parentNode || document); });
})();
