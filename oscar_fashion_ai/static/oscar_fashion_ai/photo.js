/* Search by photo: a photo from the camera, a file, the clipboard or drag and drop; a crop box the shopper moves and
   resizes with mouse, touch, pen (Pointer Events) or keys; results swapped in without a reload. Plain JS. */
(function () {
  "use strict";
  var form = document.getElementById("fashion-ai-photo-form");
  if (!form) return;
  var drop = document.getElementById("fashion-ai-drop");
  var cropPanel = document.getElementById("fashion-ai-crop");
  var stage = document.getElementById("fashion-ai-crop-stage");
  var img = document.getElementById("fashion-ai-crop-image");
  var boxEl = document.getElementById("fashion-ai-crop-box");
  var boxInput = document.getElementById("fashion-ai-box");
  var statusEl = document.getElementById("fashion-ai-photo-status");
  var inputs = [document.getElementById("fashion-ai-photo"), document.getElementById("fashion-ai-photo-file")];
  var maxBytes = Number(form.dataset.maxBytes || 0);
  var MIN_SIDE = 16; // image pixels; the API accepts 8
  var state = { file: null, url: null, w: 0, h: 0, box: null, userBox: false, seq: 0, shown: false };

  function say(text) { statusEl.textContent = text; }
  function csrf() {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // --- the photo -------------------------------------------------------------------------------------------
  function useFile(file) {
    if (!file) return;
    if (file.type && !/^image\//.test(file.type)) { say("That is not an image: use a JPEG, PNG or WebP photo."); return; }
    if (maxBytes && file.size > maxBytes) { say("The photo is larger than " + Math.round(maxBytes / 1048576) + " MB."); return; }
    if (state.url) URL.revokeObjectURL(state.url);
    state.file = file;
    state.url = URL.createObjectURL(file);
    state.box = null;
    state.userBox = false;
    state.shown = false;
    boxInput.value = "";
    img.onload = function () {
      state.w = img.naturalWidth;
      state.h = img.naturalHeight;
      state.shown = true;
      state.box = { x: 0, y: 0, w: state.w, h: state.h };
      drop.hidden = true;
      cropPanel.hidden = false;
      fit();
      render();
      search();
    };
    img.onerror = function () { // e.g. a format this browser cannot show: the server may still read it
      state.shown = false;
      search();
    };
    img.src = state.url;
  }
  inputs.forEach(function (input) {
    if (!input) return;
    input.addEventListener("change", function () { if (input.files && input.files[0]) useFile(input.files[0]); });
  });
  document.getElementById("fashion-ai-photo-change").addEventListener("click", function () {
    cropPanel.hidden = true;
    drop.hidden = false;
    inputs.forEach(function (input) { if (input) input.value = ""; });
    state.file = null;
    state.shown = false;
    drop.focus();
  });

  // Paste from the clipboard (an image copied in another app or browser tab).
  document.addEventListener("paste", function (e) {
    var data = e.clipboardData;
    if (!data) return;
    var file = null;
    var i;
    for (i = 0; data.files && i < data.files.length; i++) {
      if (/^image\//.test(data.files[i].type)) { file = data.files[i]; break; }
    }
    for (i = 0; !file && data.items && i < data.items.length; i++) {
      if (data.items[i].kind === "file" && /^image\//.test(data.items[i].type)) file = data.items[i].getAsFile();
    }
    if (!file) return; // text goes where it was pasted
    e.preventDefault();
    useFile(file);
  });

  // Drag and drop anywhere on the page (a file dropped elsewhere would otherwise replace the page).
  function hasFiles(e) {
    var types = e.dataTransfer && e.dataTransfer.types;
    return types && Array.prototype.indexOf.call(types, "Files") >= 0;
  }
  var dragDepth = 0;
  function highlight(on) { (cropPanel.hidden ? drop : stage).classList.toggle("fashion-ai-dragover", on); }
  document.addEventListener("dragenter", function (e) { if (hasFiles(e)) { dragDepth++; highlight(true); } });
  document.addEventListener("dragleave", function () { if (dragDepth > 0 && --dragDepth === 0) highlight(false); });
  document.addEventListener("dragover", function (e) {
    if (hasFiles(e) || (e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types, "text/uri-list") >= 0)) {
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
    }
  });
  document.addEventListener("drop", function (e) {
    if (!e.dataTransfer) return;
    dragDepth = 0;
    highlight(false);
    var files = e.dataTransfer.files;
    if (files && files.length) {
      e.preventDefault();
      useFile(files[0]);
    } else if (Array.prototype.indexOf.call(e.dataTransfer.types, "text/uri-list") >= 0) {
      e.preventDefault(); // an image dragged from another site arrives as its address: we do not fetch those
      say("Drop the photo file itself, or copy the image and paste it here: we do not download images from other sites.");
    }
  });

  // --- the crop box ----------------------------------------------------------------------------------------
  function scale() { return img.clientWidth / state.w; }
  function render() {
    if (!state.box || !state.w) return;
    var s = scale();
    boxEl.style.left = state.box.x * s + "px";
    boxEl.style.top = state.box.y * s + "px";
    boxEl.style.width = state.box.w * s + "px";
    boxEl.style.height = state.box.h * s + "px";
    var b = rounded();
    boxEl.setAttribute("aria-valuetext", b.join(", "));
    boxEl.dataset.box = b.join(",");
  }
  function rounded() {
    var b = state.box;
    var x = Math.max(0, Math.round(b.x)), y = Math.max(0, Math.round(b.y));
    return [x, y, Math.min(state.w - x, Math.round(b.w)), Math.min(state.h - y, Math.round(b.h))];
  }
  /* Shows the photo as large as the column allows (small photos too, so the box is easy to handle) and at most
     70 % of the window's height. */
  function fit() {
    if (!state.w) return;
    var avail = cropPanel.clientWidth || cropPanel.parentNode.clientWidth;
    var width = Math.min(avail, window.innerHeight * 0.7 * state.w / state.h);
    img.style.width = Math.max(1, Math.floor(width)) + "px";
  }
  window.addEventListener("resize", function () { fit(); render(); });

  function clampBox(b) {
    var min = Math.min(MIN_SIDE, state.w, state.h);
    b.w = Math.max(min, Math.min(b.w, state.w));
    b.h = Math.max(min, Math.min(b.h, state.h));
    b.x = Math.max(0, Math.min(b.x, state.w - b.w));
    b.y = Math.max(0, Math.min(b.y, state.h - b.h));
    return b;
  }
  /* Moves one side or corner (or the whole box, "move") by dx, dy image pixels from the box ``from``. */
  function dragged(from, handle, dx, dy) {
    var min = Math.min(MIN_SIDE, state.w, state.h);
    var left = from.x, top = from.y, right = from.x + from.w, bottom = from.y + from.h;
    if (handle === "move") {
      return clampBox({ x: from.x + dx, y: from.y + dy, w: from.w, h: from.h });
    }
    if (handle.indexOf("w") >= 0) left = Math.max(0, Math.min(left + dx, right - min));
    if (handle.indexOf("e") >= 0) right = Math.min(state.w, Math.max(right + dx, left + min));
    if (handle.indexOf("n") >= 0) top = Math.max(0, Math.min(top + dy, bottom - min));
    if (handle.indexOf("s") >= 0) bottom = Math.min(state.h, Math.max(bottom + dy, top + min));
    return { x: left, y: top, w: right - left, h: bottom - top };
  }

  var drag = null;
  function start(e, handle, from) {
    e.preventDefault();
    stage.setPointerCapture(e.pointerId);
    drag = { id: e.pointerId, handle: handle, x: e.clientX, y: e.clientY, from: from, moved: false, before: state.box };
    boxEl.focus({ preventScroll: true });
  }
  boxEl.addEventListener("pointerdown", function (e) {
    if (drag || !state.box) return;
    start(e, (e.target.dataset && e.target.dataset.handle) || "move", state.box);
  });
  img.addEventListener("pointerdown", function (e) { // draw a new box from where the shopper presses
    if (drag || !state.w) return;
    var r = img.getBoundingClientRect();
    var s = scale();
    var x = (e.clientX - r.left) / s, y = (e.clientY - r.top) / s;
    start(e, "se", clampBox({ x: x, y: y, w: MIN_SIDE, h: MIN_SIDE }));
    state.box = drag.from;
    render();
  });
  stage.addEventListener("pointermove", function (e) {
    if (!drag || e.pointerId !== drag.id) return;
    var s = scale();
    var dx = (e.clientX - drag.x) / s, dy = (e.clientY - drag.y) / s;
    if (Math.abs(dx) + Math.abs(dy) > 0) drag.moved = true;
    state.box = dragged(drag.from, drag.handle, dx, dy);
    render();
  });
  function end(e) {
    if (!drag || e.pointerId !== drag.id) return;
    var moved = drag.moved;
    if (!moved) { state.box = drag.before; render(); } // a tap on the photo without dragging changes nothing
    drag = null;
    if (moved) { state.userBox = true; search(); }
  }
  stage.addEventListener("pointerup", end);
  stage.addEventListener("pointercancel", end);

  var keyTimer = null;
  boxEl.addEventListener("keydown", function (e) {
    var steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    var step = steps[e.key];
    if (!step || !state.box) return;
    e.preventDefault();
    var px = Math.max(1, Math.round(Math.max(state.w, state.h) * 0.02));
    state.box = dragged(state.box, e.shiftKey ? "se" : "move", step[0] * px, step[1] * px);
    render();
    state.userBox = true;
    clearTimeout(keyTimer);
    keyTimer = setTimeout(search, 500);
  });
  document.getElementById("fashion-ai-crop-whole").addEventListener("click", function () {
    if (!state.w) return;
    state.box = { x: 0, y: 0, w: state.w, h: state.h };
    state.userBox = true;
    render();
    search();
  });

  // --- searching -------------------------------------------------------------------------------------------
  function search() {
    if (!state.file) { say("Choose, take, paste or drop a photo first."); return; }
    var body = new FormData();
    body.append("csrfmiddlewaretoken", csrf());
    body.append("fragment", "1");
    body.append("image", state.file, state.file.name || "photo.png");
    ["category", "price_min", "price_max"].forEach(function (name) {
      var field = form.elements[name];
      if (field && field.value) body.append(name, field.value);
    });
    if (state.userBox && state.box && state.shown) {
      boxInput.value = rounded().join(",");
      body.append("box", boxInput.value);
    }
    var seq = ++state.seq;
    var current = document.getElementById("fashion-ai-photo-results");
    if (current) current.setAttribute("aria-busy", "true");
    say("Searching…");
    fetch(form.action, { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRFToken": csrf() } })
      .then(function (resp) { return resp.text().then(function (html) { return { ok: resp.ok, html: html }; }); })
      .then(function (res) {
        if (seq !== state.seq) return; // a newer search is on its way
        var tpl = document.createElement("template");
        tpl.innerHTML = res.html;
        var fresh = tpl.content.getElementById("fashion-ai-photo-results");
        var old = document.getElementById("fashion-ai-photo-results");
        if (!fresh || !old) { say("Search failed: please try again."); if (old) old.removeAttribute("aria-busy"); return; }
        old.parentNode.replaceChild(fresh, old);
        if (!res.ok) { say(""); return; }
        var found = fresh.querySelectorAll("#fashion-ai-results > li").length;
        say(fresh.querySelector("#fashion-ai-nothing-close") ? "Nothing close: showing the nearest products." :
          found ? found + " products found." : "No matching products.");
        if (!state.userBox && state.shown && fresh.dataset.box && fresh.dataset.boxSource === "preset") {
          var b = fresh.dataset.box.split(",").map(Number);
          var sx = state.w / Number(fresh.dataset.width || state.w), sy = state.h / Number(fresh.dataset.height || state.h);
          state.box = clampBox({ x: b[0] * sx, y: b[1] * sy, w: b[2] * sx, h: b[3] * sy });
          render();
          boxEl.dataset.preset = "1";
        }
        form.dataset.searched = String(seq);
      })
      .catch(function () { if (seq === state.seq) say("Search failed: please try again."); });
  }
  form.addEventListener("submit", function (e) {
    if (!state.file) return; // no script-picked photo: the form posts normally (and the server explains)
    e.preventDefault();
    search();
  });
  ["fashion-ai-category", "fashion-ai-price-min", "fashion-ai-price-max"].forEach(function (id) {
    var field = document.getElementById(id);
    if (field) field.addEventListener("change", function () { if (state.file) search(); });
  });
  form.dataset.ready = "1";
})();
