"use strict";
// The drift page's changes: filtered by class, endpoint and text, shown a page at a time.
// Every recorded value reaches the page through textContent: nothing here parses HTML.
(function () {
  var data = JSON.parse(document.getElementById("baton-data").textContent);
  var changes = data.changes, requests = data.requests;
  var PAGE = 100;
  var gated = new Set(data.gated);
  var tallies = {};
  data.endpoints.forEach(function (e) { tallies[e.name] = e; });
  var haystacks = null;  // built on the first text search
  var state = { classes: new Set(data.classes), endpoint: "", text: "", page: 0 };
  var open = new Set();
  var shown = [];

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function byId(id) { return document.getElementById(id); }

  function haystack(i) {
    if (haystacks === null) {
      haystacks = new Array(changes.length);
    }
    var h = haystacks[i];
    if (h === undefined) {
      var c = changes[i], q = requests[c.q];
      h = [c.e, c.l, c.k, c.o || "", c.n || "", c.r, q.method + " " + q.target, q.id, q.note].join("\n").toLowerCase();
      haystacks[i] = h;
    }
    return h;
  }

  function filter() {
    var out = [], text = state.text, endpoint = state.endpoint, classes = state.classes;
    for (var i = 0; i < changes.length; i++) {
      var c = changes[i];
      if (!classes.has(c.c)) continue;
      if (endpoint && c.e !== endpoint) continue;
      if (text && haystack(i).indexOf(text) < 0) continue;
      out.push(i);
    }
    shown = out;
  }

  function short(text, limit) {
    if (text === null) return "(absent)";
    text = text.replace(/\s*\n\s*/g, " ");
    return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  // Lines of a and b that are not in their longest common subsequence: the differing part.
  function differing(a, b) {
    var n = a.length, m = b.length;
    if (n * m > 250000) {
      return [a.map(function () { return true; }), b.map(function () { return true; })];
    }
    var table = [];
    for (var i = 0; i <= n; i++) table.push(new Uint32Array(m + 1));
    for (i = n - 1; i >= 0; i--) {
      for (var j = m - 1; j >= 0; j--) {
        table[i][j] = a[i] === b[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
      }
    }
    var da = a.map(function () { return true; }), db = b.map(function () { return true; });
    i = 0; j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { da[i] = false; db[j] = false; i++; j++; }
      else if (table[i + 1][j] >= table[i][j + 1]) i++;
      else j++;
    }
    return [da, db];
  }

  function pane(side, title, text, marks) {
    var box = el("div", "side " + side);
    box.appendChild(el("h4", null, title));
    if (text === null) {
      box.appendChild(el("div", "absent", "absent"));
      return box;
    }
    var pre = el("pre");
    var lines = text.split("\n");
    lines.forEach(function (line, n) {
      var span = el("span", marks[n] ? "hl" : "line", line);
      pre.appendChild(span);
      if (n < lines.length - 1) pre.appendChild(document.createTextNode("\n"));
    });
    box.appendChild(pre);
    return box;
  }

  function detail(i) {
    var c = changes[i], q = requests[c.q];
    var box = el("div", "detail");
    var path = el("p", "path");
    path.appendChild(document.createTextNode("field: "));
    path.appendChild(el("code", "field-path", c.l));
    path.appendChild(document.createTextNode("  ·  " + c.k));
    box.appendChild(path);
    // The field's own name before its value, so a scalar reads in place: "price": 12.5
    var key = /\.([^.\[\]]+)$/.exec(c.l), prefix = "";
    if (key && c.l.indexOf("body") === 0) prefix = JSON.stringify(key[1]) + ": ";
    else if (key && c.l.indexOf("header.") === 0) prefix = key[1] + ": ";
    var oldText = c.o === null ? null : prefix + c.o, newText = c.n === null ? null : prefix + c.n;
    var a = oldText === null ? [] : oldText.split("\n"), b = newText === null ? [] : newText.split("\n");
    var marks = differing(a, b);
    var sides = el("div", "sides");
    sides.appendChild(pane("old", "recorded", oldText, marks[0]));
    sides.appendChild(pane("new", "new", newText, marks[1]));
    box.appendChild(sides);
    var req = el("p", "request");
    req.appendChild(document.createTextNode("request #" + q.number + ": "));
    req.appendChild(el("code", "request-line", q.method + " " + q.target));
    req.appendChild(document.createTextNode(
      "  ·  status " + (q.recorded === null ? "—" : q.recorded) + " → " + (q.new === null ? "—" : q.new) +
      "  ·  id " + q.id));
    if (q.note) req.appendChild(document.createTextNode("  ·  " + q.note));
    box.appendChild(req);
    var noise = el("p", "noise-status");
    if (c.c === "noise") {
      noise.textContent = c.r === "learned" ? "learned as noise (it differed between two answers of the reference)"
        : "noise: " + (c.r || "matched an ignore rule");
    } else {
      noise.textContent = "not noise" + (gated.has(c.c) ? ": fails the gate" : "");
    }
    box.appendChild(noise);
    return box;
  }

  function row(i) {
    var c = changes[i];
    var item = el("div", "change " + c.c);
    item.id = "change-" + i;
    item.setAttribute("data-class", c.c);
    var head = el("button", "head");
    head.type = "button";
    head.setAttribute("aria-expanded", open.has(i) ? "true" : "false");
    head.appendChild(el("span", "badge c-" + c.c, c.c));
    if (gated.has(c.c)) head.appendChild(el("span", "badge gate", "gate"));
    if (c.c === "noise" && c.r) head.appendChild(el("span", "badge c-noise", c.r === "learned" ? "learned" : "ignored"));
    head.appendChild(el("span", "loc", c.l));
    head.appendChild(el("span", "kind", c.k));
    head.appendChild(el("span", "short", short(c.o, 60) + " → " + short(c.n, 60)));
    var bar = el("div", "bar");
    bar.appendChild(head);
    var link = el("a", "permalink", "#" + i);
    link.href = "#change-" + i;
    link.title = "link to this change";
    bar.appendChild(link);
    item.appendChild(bar);
    if (open.has(i)) item.appendChild(detail(i));
    head.addEventListener("click", function () { toggle(i, item); });
    return item;
  }

  function toggle(i, item) {
    var head = item.querySelector(".head");
    var existing = item.querySelector(".detail");
    if (existing) {
      existing.remove();
      open.delete(i);
      head.setAttribute("aria-expanded", "false");
    } else {
      item.appendChild(detail(i));
      open.add(i);
      head.setAttribute("aria-expanded", "true");
    }
  }

  function pager(nav, pages) {
    nav.replaceChildren();
    if (pages <= 1) return;
    function go(label, page, disabled) {
      var b = el("button", "page", label);
      b.type = "button";
      b.disabled = disabled;
      b.addEventListener("click", function () { state.page = page; render(); });
      nav.appendChild(b);
    }
    go("« first", 0, state.page === 0);
    go("‹ previous", state.page - 1, state.page === 0);
    nav.appendChild(el("span", "page-of", "page " + (state.page + 1) + " of " + pages));
    go("next ›", state.page + 1, state.page >= pages - 1);
    go("last »", pages - 1, state.page >= pages - 1);
  }

  function render() {
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    var start = state.page * PAGE, end = Math.min(shown.length, start + PAGE);
    var list = byId("change-list");
    var fragment = document.createDocumentFragment();
    var group = null;
    for (var n = start; n < end; n++) {
      var i = shown[n], c = changes[i];
      if (c.e !== group) {
        group = c.e;
        var heading = el("h3", "group");
        heading.appendChild(el("code", "endpoint", c.e));
        var t = tallies[c.e];
        heading.appendChild(el("span", "tally", data.classes.filter(function (k) { return t.counts[k]; })
          .map(function (k) { return t.counts[k] + " " + k; }).join(", ") + " · " + t.interactions +
          (t.interactions === 1 ? " interaction" : " interactions")));
        fragment.appendChild(heading);
      }
      fragment.appendChild(row(i));
    }
    list.replaceChildren(fragment);
    byId("shown-status").textContent = shown.length === changes.length
      ? changes.length + " changes" + (shown.length ? ", showing " + (start + 1) + "–" + end : "")
      : shown.length + " of " + changes.length + " changes match" + (shown.length ? ", showing " + (start + 1) + "–" + end : "");
    pager(byId("pager-top"), pages);
    pager(byId("pager-bottom"), pages);
  }

  function update() {
    filter();
    state.page = 0;
    render();
  }

  function reveal() {
    var match = /^#change-(\d+)$/.exec(window.location.hash);
    if (!match) return;
    var i = Number(match[1]);
    if (!(i < changes.length)) return;
    var at = shown.indexOf(i);
    if (at < 0) {
      state.classes = new Set(data.classes);
      state.endpoint = "";
      state.text = "";
      data.classes.forEach(function (k) { byId("filter-" + k).checked = true; });
      byId("filter-endpoint").value = "";
      byId("filter-text").value = "";
      filter();
      at = shown.indexOf(i);
    }
    state.page = Math.floor(at / PAGE);
    open.add(i);
    render();
    var node = byId("change-" + i);
    node.classList.add("target");
    node.scrollIntoView({ block: "start" });
  }

  var select = byId("filter-endpoint");
  data.endpoints.forEach(function (e) {
    var option = el("option", null, e.name);
    option.value = e.name;
    select.appendChild(option);
  });
  data.classes.forEach(function (k) {
    byId("filter-" + k).addEventListener("change", function (event) {
      if (event.target.checked) state.classes.add(k); else state.classes.delete(k);
      update();
    });
  });
  select.addEventListener("change", function () { state.endpoint = select.value; update(); });
  var timer = null;
  byId("filter-text").addEventListener("input", function (event) {
    var value = event.target.value.trim().toLowerCase();
    clearTimeout(timer);
    timer = setTimeout(function () { state.text = value; update(); }, 120);
  });
  byId("filters").addEventListener("submit", function (event) { event.preventDefault(); });
  byId("expand-all").addEventListener("click", function () {
    shown.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (i) { open.add(i); });
    render();
  });
  byId("collapse-all").addEventListener("click", function () { open.clear(); render(); });
  Array.prototype.forEach.call(document.querySelectorAll(".endpoint-pick"), function (button) {
    button.addEventListener("click", function () {
      state.endpoint = button.getAttribute("data-endpoint");
      select.value = state.endpoint;
      update();
      byId("filters").scrollIntoView({ block: "start" });
    });
  });
  window.addEventListener("hashchange", reveal);

  filter();
  render();
  reveal();
  document.documentElement.setAttribute("data-rendered-ms", String(performance.now()));
})();
