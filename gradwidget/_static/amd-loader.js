// gradwidget: a minimal AMD loader for a page whose modules are all inline.
//
// The offline report defines every module in its own <script> tags: the widget manager's
// named modules, and bqplot's anonymous bundles, which get their name from the tag's
// data-amd-name attribute. require() only looks modules up; it never fetches anything, so a
// missing module fails loudly instead of reaching for a CDN.
(function () {
  "use strict";
  var registry = {};

  function define(name, deps, factory) {
    if (typeof name !== "string") {
      factory = deps;
      deps = name;
      var tag = document.currentScript;
      name = tag ? tag.getAttribute("data-amd-name") : null;
    }
    if (!Array.isArray(deps)) {
      factory = deps;
      deps = [];
    }
    if (!name) {
      console.warn("gradwidget: ignored an anonymous define() outside a named script tag");
      return;
    }
    registry[name] = { deps: deps, factory: factory, done: false, exports: undefined };
  }
  define.amd = {};

  function load(name) {
    var entry = registry[name];
    if (!entry) {
      throw new Error("gradwidget report: module '" + name + "' is not in this page");
    }
    if (!entry.done) {
      // Webpack's AMD output reads module.uri to find its public path.
      var module = { id: name, uri: document.location.href, exports: {} };
      module.config = function () {
        return {};
      };
      var args = entry.deps.map(function (dep) {
        if (dep === "module") return module;
        if (dep === "exports") return module.exports;
        if (dep === "require") return requirejs;
        return load(dep);
      });
      var result = typeof entry.factory === "function"
        ? entry.factory.apply(null, args)
        : entry.factory;
      entry.exports = result !== undefined ? result : module.exports;
      entry.done = true;
    }
    return entry.exports;
  }

  function requirejs(deps, callback, errback) {
    if (typeof deps === "string") return load(deps);
    // Asynchronous like require.js: callers may rely on the callback running later.
    Promise.resolve()
      .then(function () {
        return deps.map(load);
      })
      .then(
        function (modules) {
          if (callback) callback.apply(null, modules);
        },
        function (error) {
          if (errback) errback(error);
          else console.error(error);
        }
      );
  }

  window.define = define;
  window.require = window.requirejs = requirejs;
})();
