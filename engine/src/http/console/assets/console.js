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
        el.textContent = d.toLocaleString(undefined, format);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  // The job form's preview answers an error for a bad expression: mark the field too.
  document.addEventListener("htmx:afterSwap", function (e) {
    var target = e.detail && e.detail.target;
    var field = document.querySelector("input[name=time_expression]");
    if (target && target.id === "preview" && field) {
      field.setAttribute("aria-invalid", target.querySelector(".error") ? "true" : "false");
    }
  });
  document.addEventListener("htmx:afterSwap", function (e) { localize(e.target.parentNode || document); });
})();
