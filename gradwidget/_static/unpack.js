// gradwidget: unpack the report's scripts, then draw its widgets.
//
// Every large script of the report (the AMD loader, the widget manager, the widget bundles,
// the widget state) is stored gzipped and base64-encoded in a <script type="PACKED"> tag, a
// fifth of its plain size. The browser's own DecompressionStream unpacks each one; they are
// then added to the page in their order, as plain <script> elements (an anonymous define()
// finds its module name in data-amd-name), and the render call runs last. Nothing is fetched.
(function () {
  "use strict";
  var PACKED = "application/x-gradwidget-gzip";

  function unpack(tag) {
    var text = atob(tag.textContent.trim());
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text();
  }

  function add(tag, source) {
    var script = document.createElement("script");
    var type = tag.getAttribute("data-type");
    var name = tag.getAttribute("data-amd-name");
    if (type) script.setAttribute("type", type);
    if (name) script.setAttribute("data-amd-name", name);
    script.textContent = source;  // an inline script runs as soon as it is added
    document.head.appendChild(script);
  }

  function fail(message) {
    var note = document.createElement("p");
    note.className = "gw-unpack-error";
    note.textContent = "The charts of this report could not be drawn: " + message;
    document.body.appendChild(note);
  }

  if (typeof DecompressionStream === "undefined") {
    fail("this browser has no DecompressionStream (Chrome 80, Firefox 113, Safari 16.4 or later).");
    return;
  }
  var tags = Array.prototype.slice.call(document.querySelectorAll('script[type="' + PACKED + '"]'));
  Promise.all(tags.map(unpack)).then(function (sources) {
    sources.forEach(function (source, i) { add(tags[i], source); });
    window.gradwidgetRender();
  }).catch(function (error) {
    console.error(error);
    fail(String(error));
  });
})();
