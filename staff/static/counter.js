// Counter screen: a sound for each kind of alert, and the focus kept where the next scan goes.
// The page works without this script (silently); nothing here sends data anywhere.
(function () {
  "use strict";
  // [frequency Hz, duration ms, waveform] per note; each alert kind has its own pattern.
  var PATTERNS = {
    ok: [[1320, 90, "sine"]],
    info: [[880, 80, "sine"], [880, 80, "sine"]],
    warn: [[660, 160, "triangle"], [440, 220, "triangle"]],
    error: [[220, 180, "square"], [0, 60], [220, 180, "square"], [0, 60], [220, 260, "square"]],
    transfer: [[523, 110, "sine"], [659, 110, "sine"], [784, 180, "sine"]],
    hold: [[784, 120, "sine"], [988, 120, "sine"], [784, 120, "sine"], [988, 220, "sine"]]
  };

  function play(kind) {
    var pattern = PATTERNS[kind];
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!pattern || !Ctx) { return; }
    var ctx;
    try { ctx = new Ctx(); } catch (e) { return; }
    var t = ctx.currentTime + 0.02;
    pattern.forEach(function (note) {
      var seconds = note[1] / 1000;
      if (note[0] > 0) {
        var osc = ctx.createOscillator();
        var gain = ctx.createGain();
        osc.type = note[2];
        osc.frequency.value = note[0];
        gain.gain.setValueAtTime(0.25, t);
        gain.gain.exponentialRampToValueAtTime(0.001, t + seconds);
        osc.connect(gain).connect(ctx.destination);
        osc.start(t);
        osc.stop(t + seconds);
      }
      t += seconds;
    });
    document.body.setAttribute("data-played", kind);
  }

  function scanField() { return document.querySelector("[data-scan]"); }

  document.addEventListener("DOMContentLoaded", function () {
    var alerts = document.getElementById("alerts");
    if (alerts && alerts.dataset.sound) { play(alerts.dataset.sound); }
    var field = scanField();
    if (field) { field.focus(); }
    // A click on empty space must not strand the focus away from the scanner's field.
    document.addEventListener("click", function (event) {
      var target = event.target;
      if (target.closest("a, button, input, select, textarea, summary, label")) { return; }
      var f = scanField();
      if (f) { f.focus(); }
    });
    // Esc ends the visit without printing (the same as the link on the page).
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        var end = document.querySelector("[data-end-visit]");
        if (end) { event.preventDefault(); end.click(); }
      }
    });
  });
}());
