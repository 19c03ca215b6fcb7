/* Search by sketch: a drawing canvas (mouse, touch and pen via Pointer Events) that posts to the JSON API.
   Undo/redo, a category that re-runs the search when changed after a search, "Closer to this" on a result (the
   search moves towards that product), and the "what we understood" picture only when a generator made one. */
(function () {
  "use strict";
  var root = document.getElementById("fashion-ai-sketch");
  if (!root) return;
  var canvas = document.getElementById("fashion-ai-canvas");
  var ctx = canvas.getContext("2d");
  var brush = document.getElementById("fashion-ai-brush");
  var penBtn = document.getElementById("fashion-ai-pen");
  var eraserBtn = document.getElementById("fashion-ai-eraser");
  var status = document.getElementById("fashion-ai-sketch-status");
  var results = document.getElementById("fashion-ai-sketch-results");
  var understood = document.getElementById("fashion-ai-understood");
  var history = [];
  var redoStack = [];
  var like = null; // {id, title}: "Closer to this" product, sent as `like`
  var searched = false;
  var erasing = false;
  var drawing = false;
  var last = null;

  function reset() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  reset();

  function point(e) {
    var r = canvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * canvas.width / r.width, y: (e.clientY - r.top) * canvas.height / r.height };
  }
  function stroke(a, b, pressure) {
    ctx.strokeStyle = erasing ? "#fff" : "#000";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    var width = Number(brush.value) * (erasing ? 3 : 1);
    ctx.lineWidth = pressure ? Math.max(1, width * (0.5 + pressure)) : width;
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
  }
  canvas.addEventListener("pointerdown", function (e) {
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    remember();
    drawing = true;
    last = point(e);
    stroke(last, last, e.pointerType === "pen" ? e.pressure : 0);
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drawing) return;
    var p = point(e);
    stroke(last, p, e.pointerType === "pen" ? e.pressure : 0);
    last = p;
  });
  ["pointerup", "pointercancel", "pointerleave"].forEach(function (name) {
    canvas.addEventListener(name, function () { drawing = false; });
  });

  function setTool(eraser) {
    erasing = eraser;
    penBtn.setAttribute("aria-pressed", String(!eraser));
    eraserBtn.setAttribute("aria-pressed", String(eraser));
    penBtn.classList.toggle("active", !eraser);
    eraserBtn.classList.toggle("active", eraser);
  }
  penBtn.addEventListener("click", function () { setTool(false); });
  eraserBtn.addEventListener("click", function () { setTool(true); });
  function snapshot() { return ctx.getImageData(0, 0, canvas.width, canvas.height); }
  function remember() { // before a change: it can be undone, and what was undone can no longer be redone
    history.push(snapshot());
    if (history.length > 50) history.shift();
    redoStack = [];
  }
  function undo() { if (history.length) { redoStack.push(snapshot()); ctx.putImageData(history.pop(), 0, 0); } }
  function redo() { if (redoStack.length) { history.push(snapshot()); ctx.putImageData(redoStack.pop(), 0, 0); } }
  document.getElementById("fashion-ai-undo").addEventListener("click", undo);
  document.getElementById("fashion-ai-redo").addEventListener("click", redo);
  document.getElementById("fashion-ai-clear").addEventListener("click", function () {
    remember();
    reset();
  });
  document.addEventListener("keydown", function (e) {
    if (!(e.ctrlKey || e.metaKey)) return;
    var key = e.key.toLowerCase();
    if (key === "z" && !e.shiftKey) { e.preventDefault(); undo(); }
    else if ((key === "z" && e.shiftKey) || key === "y") { e.preventDefault(); redo(); }
  });
  setTool(false);

  function csrf() {
    var input = root.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function render(data) {
    results.innerHTML = "";
    data.results.forEach(function (r) {
      var li = document.createElement("li");
      li.className = "col-6 col-sm-4 mb-3";
      li.dataset.productId = r.product_id;
      var a = document.createElement("a");
      a.href = r.url;
      if (r.image_url) {
        var img = document.createElement("img");
        img.src = r.image_url; img.alt = r.title; img.loading = "lazy";
        img.style.width = "100%"; img.style.aspectRatio = "1/1"; img.style.objectFit = "contain";
        a.appendChild(img);
      }
      var title = document.createElement("div");
      title.textContent = r.title;
      a.appendChild(title);
      li.appendChild(a);
      var more = document.createElement("a"); // "More like this", as on every product card
      more.href = root.dataset.moreUrl.replace(/0\/$/, r.product_id + "/");
      more.className = "btn btn-sm btn-outline-secondary btn-block mt-1 fashion-ai-more-like-this";
      more.textContent = root.dataset.moreLabel || "More like this";
      li.appendChild(more);
      var closer = document.createElement("button"); // the drawing, moved towards this product
      closer.type = "button";
      closer.className = "btn btn-sm btn-outline-primary btn-block mt-1 fashion-ai-closer";
      closer.textContent = root.dataset.closerLabel || "Closer to this";
      closer.addEventListener("click", function () { setLike({ id: r.product_id, title: r.title }); search(); });
      li.appendChild(closer);
      results.appendChild(li);
    });
    // The normalised drawing alone tells the shopper nothing new: the picture is shown when a generator made it.
    if (data.generated_image && data.generated_by === "generator") {
      understood.querySelector("img").src = data.generated_image;
      understood.hidden = false;
    } else {
      understood.hidden = true;
    }
  }
  var likeBox = document.getElementById("fashion-ai-like");
  function setLike(value) {
    like = value;
    likeBox.hidden = !like;
    likeBox.querySelector("span").textContent = like ? (root.dataset.closerStatus || "Closer to:") + " " + like.title + " " : "";
  }
  document.getElementById("fashion-ai-like-clear").addEventListener("click", function () { setLike(null); search(); });
  // A category chosen after a search narrows the results at once.
  document.getElementById("fashion-ai-category").addEventListener("change", function () { if (searched) search(); });
  var submit = document.getElementById("fashion-ai-sketch-submit");
  submit.addEventListener("click", function () { search(); });
  function search() {
    status.textContent = "Searching…";
    var body = { sketch: canvas.toDataURL("image/png"), k: 12 };
    if (like) body.like = like.id;
    var category = document.getElementById("fashion-ai-category").value;
    if (category) body.category = category;
    ["price_min", "price_max"].forEach(function (name) {
      var field = document.getElementById("fashion-ai-" + name.replace("_", "-"));
      if (field && field.value) body[name] = field.value;
    });
    fetch(root.dataset.api, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body)
    }).then(function (resp) {
      return resp.json().then(function (data) { return { ok: resp.ok, data: data }; });
    }).then(function (res) {
      if (!res.ok) { status.textContent = res.data.error || "Something went wrong."; results.innerHTML = ""; return; }
      searched = true;
      status.textContent = res.data.nothing_close ? res.data.message :
        res.data.results.length ? res.data.results.length + " products found." : "No matching products.";
      render(res.data);
    }).catch(function () { status.textContent = "Search failed: please try again."; });
  }
  // The button is rendered disabled: a tap before this script has run would otherwise do nothing at all.
  submit.disabled = false;
  root.dataset.ready = "1";
})();
