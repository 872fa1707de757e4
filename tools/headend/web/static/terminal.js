// The terminal page's command form: POST the operation with the CSRF token, show the terminal's answer.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("command");
  if (!form) return;
  var out = document.getElementById("answer");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var button = form.querySelector("button");
    button.disabled = true;
    out.textContent = "sent, waiting for the answer…";
    fetch("/terminal/" + encodeURIComponent(form.dataset.tid) + "/command", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf},
      body: JSON.stringify({op: form.op.value, args: form.args.value})
    }).then(function (r) { return r.json(); }).then(function (j) {
      out.className = j.ok ? "ok" : "error";
      out.textContent = j.answer ? JSON.stringify(j.answer, null, 1) : (j.error || "no answer");
    }).catch(function (e) {
      out.className = "error";
      out.textContent = "request failed: " + e;
    }).finally(function () { button.disabled = false; });
  });
});
