// dfer error-analysis gallery: folds in window.DFER_FOLDS; a fold's cards either inlined in
// window.DFER_INLINE (single-file gallery) or loaded from "{key}/cards.js", which calls
// window.dferCards(key, cards). No network, no storage: works from file:// and in the data:
// iframe of a Snakemake report. Card keys: id, t (true), p (predicted), c (confidence),
// ok, top [[class, prob]], img / lm / ps (face strip, overlays), cap / raw (caption, raw
// MLLM text), sp / sn (similarity to positive / negative descriptors per class),
// w (modality weights, names in fold.levels), ls (per-level class scores, fold.score_levels),
// and on a fold compared with the reference run (fold.pair): pair (both predictions as text),
// vs (the reference's p / c / ok; null: it did not evaluate the clip), dis (they disagree).
(function () {
  "use strict";
  var PAGE_SIZE = 48;
  var folds = window.DFER_FOLDS || [];
  var loaded = {};
  var state = { fold: null, cards: [], t: "", p: "", outcome: "all", sort: "asc", page: 0 };
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function num(x) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(3); }

  window.dferCards = function (key, cards) {
    loaded[key] = cards;
    if (state.fold && state.fold.key === key) showCards(cards);
  };

  function load(fold) {
    if (window.DFER_INLINE && window.DFER_INLINE[fold.key]) { showCards(window.DFER_INLINE[fold.key]); return; }
    if (loaded[fold.key]) { showCards(loaded[fold.key]); return; }
    $("status").textContent = "loading " + fold.title + " ...";
    var s = el("script", { src: encodeURI(fold.key) + "/cards.js" });
    s.onerror = function () { $("status").textContent = "could not read " + fold.key + "/cards.js"; };
    document.body.appendChild(s);
  }

  function fillSelect(select, labels, allText) {
    select.textContent = "";
    select.appendChild(el("option", { value: "" }, allText));
    labels.forEach(function (lab, i) { select.appendChild(el("option", { value: String(i) }, lab)); });
  }

  function selectFold(index) {
    var fold = folds[index];
    state.fold = fold; state.cards = []; state.t = ""; state.p = ""; state.outcome = "all"; state.page = 0;
    fillSelect($("f-true"), fold.labels, "any");
    fillSelect($("f-pred"), fold.labels, "any");
    drawPair(fold);
    syncControls();
    var acc = fold.uar === null || fold.uar === undefined ? "" :
      "UAR " + pct(fold.uar) + ", WAR " + pct(fold.war) + "; ";
    // "evaluated N of M test clips (not scored: ...)": the numbers of metrics.json (coverage)
    var counted = fold.coverage ? fold.coverage + "; " : "";
    $("fold-summary").textContent = acc + counted + fold.shown + " of " + fold.clips +
      " clips shown as cards" + (fold.shown < fold.clips ? " (wrong and least confident first)" : "");
    var hidden = fold.clips - fold.shown;
    $("limit-note").textContent = hidden > 0 ? hidden + " of " + fold.clips + " clips are not shown: " +
      "this page shows at most " + fold.shown + " cards per evaluation, the wrong and least " +
      "confident clips first (the confusion matrix counts every clip)." : "";
    $("limit-note").setAttribute("data-not-shown", String(Math.max(0, hidden)));
    drawMatrix(fold);
    $("cards").textContent = "";
    load(fold);
  }

  // the comparison with the reference run: its line, the 2x2 right / wrong table, and the
  // filter / sort options that only mean something on a compared fold
  function drawPair(fold) {
    var pair = fold.pair, compared = !!(pair && !pair.skipped);
    $("pair-section").hidden = !pair;
    $("pair-summary").textContent = pair ? pair.text : "";
    var box = $("pair-table");
    box.textContent = "";
    Array.prototype.forEach.call(document.querySelectorAll("option.paired"), function (o) {
      o.disabled = !compared; o.hidden = !compared;
    });
    if (!compared) {
      if (state.outcome === "disagree" || state.outcome === "agree") state.outcome = "all";
      if (state.sort === "disagree") state.sort = "asc";
      return;
    }
    var table = el("table", { id: "pair-2x2" }), head = el("tr");
    head.appendChild(el("th", {}, ""));
    head.appendChild(el("th", {}, pair.ref_label + " right"));
    head.appendChild(el("th", {}, pair.ref_label + " wrong"));
    table.appendChild(head);
    [[pair.label + " right", pair.both_right, pair.only_this],
     [pair.label + " wrong", pair.only_ref, pair.both_wrong]].forEach(function (r, i) {
      var tr = el("tr");
      tr.appendChild(el("th", {}, r[0]));
      tr.appendChild(el("td", { "data-cell": i === 0 ? "both_right" : "only_ref" }, r[1]));
      tr.appendChild(el("td", { "data-cell": i === 0 ? "only_this" : "both_wrong" }, r[2]));
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  function drawMatrix(fold) {
    var cm = fold.cm, labels = fold.labels, box = $("matrix");
    box.textContent = "";
    var table = el("table", { id: "cm" });
    var head = el("tr");
    head.appendChild(el("th", { "class": "axis" }, "true \\ predicted"));
    labels.forEach(function (lab) { head.appendChild(el("th", { "class": "axis" }, lab)); });
    head.appendChild(el("th", { "class": "axis" }, "recall"));
    table.appendChild(head);
    cm.forEach(function (row, i) {
      var tr = el("tr"), total = row.reduce(function (a, b) { return a + b; }, 0);
      tr.appendChild(el("th", { "class": "axis" }, labels[i]));
      row.forEach(function (count, j) {
        var share = total ? count / total : 0;
        var td = el("td", { "class": "cell", "data-true": String(i), "data-pred": String(j),
          title: labels[i] + " predicted as " + labels[j] + ": " + count + " clips" });
        td.style.background = "rgba(31, 97, 141," + (0.08 + 0.85 * share).toFixed(3) + ")";
        td.style.color = share > 0.5 ? "#fff" : "#000";
        td.appendChild(el("span", { "class": "count" }, count));
        td.appendChild(el("span", { "class": "pct" }, total ? pct(share) : "-"));
        td.addEventListener("click", function () {
          state.t = String(i); state.p = String(j); state.outcome = "all"; state.page = 0;
          syncControls(); render();
          $("cards-section").scrollIntoView();
        });
        tr.appendChild(td);
      });
      var rec = el("td", { "class": "recall" });
      var bar = el("span", { "class": "bar" });
      bar.style.width = (total ? 60 * row[i] / total : 0).toFixed(1) + "px";
      rec.appendChild(bar);
      rec.appendChild(document.createTextNode(total ? pct(row[i] / total) : "n/a"));
      tr.appendChild(rec);
      table.appendChild(tr);
    });
    box.appendChild(table);
  }

  function syncControls() {
    $("f-true").value = state.t; $("f-pred").value = state.p;
    $("f-outcome").value = state.outcome; $("f-sort").value = state.sort;
  }

  function showCards(cards) { state.cards = cards; render(); }

  function matching() {
    var out = state.cards.filter(function (c) {
      if (state.t !== "" && c.t !== Number(state.t)) return false;
      if (state.p !== "" && c.p !== Number(state.p)) return false;
      if (state.outcome === "wrong" && c.ok) return false;
      if (state.outcome === "correct" && !c.ok) return false;
      if (state.outcome === "disagree" && !c.dis) return false;
      if (state.outcome === "agree" && (!c.vs || c.dis)) return false;
      return true;
    });
    var by = state.sort;
    out.sort(function (a, b) {
      if (by === "id") return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
      if (by === "disagree" && !!a.dis !== !!b.dis) return a.dis ? -1 : 1;
      var d = by === "desc" ? b.c - a.c : a.c - b.c;
      return d !== 0 ? d : (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
    return out;
  }

  function render() {
    var fold = state.fold, list = matching();
    var pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * PAGE_SIZE, shown = list.slice(start, start + PAGE_SIZE);
    Array.prototype.forEach.call(document.querySelectorAll("#cm td.cell"), function (td) {
      td.classList.toggle("selected", td.getAttribute("data-true") === state.t &&
        td.getAttribute("data-pred") === state.p);
    });
    $("status").textContent = list.length ? "clips " + (start + 1) + "-" + (start + shown.length) +
      " of " + list.length + " matching (" + state.cards.length + " cards)" :
      "no card matches (" + state.cards.length + " cards)";
    $("status").setAttribute("data-matching", String(list.length));
    var box = $("cards");
    box.textContent = "";
    shown.forEach(function (c) { box.appendChild(card(fold, c)); });
    [$("pager-top"), $("pager-bottom")].forEach(function (p) { pager(p, pages); });
  }

  function pager(box, pages) {
    box.textContent = "";
    if (pages < 2) return;
    var prev = el("button", { type: "button" }, "previous");
    prev.disabled = state.page === 0;
    prev.addEventListener("click", function () { state.page -= 1; render(); });
    var next = el("button", { type: "button" }, "next");
    next.disabled = state.page >= pages - 1;
    next.addEventListener("click", function () { state.page += 1; render(); });
    box.appendChild(prev);
    box.appendChild(el("span", {}, "page " + (state.page + 1) + " of " + pages + " "));
    box.appendChild(next);
  }

  function card(fold, c) {
    var labels = fold.labels;
    var node = el("div", { "class": "card" + (c.ok ? "" : " wrong") + (c.dis ? " disagree" : ""), "data-id": c.id,
      "data-true": String(c.t), "data-pred": String(c.p), "data-ok": c.ok ? "1" : "0",
      "data-dis": c.dis ? "1" : "0" });
    var head = el("div", { "class": "head" });
    head.appendChild(el("span", { "class": "id", title: c.id }, c.id));
    head.appendChild(el("span", { "class": "verdict" }, (c.ok ? "correct: " : "wrong: ") +
      "true " + labels[c.t] + ", predicted " + labels[c.p] + " (" + pct(c.c) + ")"));
    node.appendChild(head);
    if (c.pair !== undefined) {
      node.appendChild(el("div", { "class": "pair", title: c.dis ? "the two runs predict different classes" : "" }, c.pair));
    }
    var strip = el("div", { "class": "strip" });
    if (c.img) {
      strip.appendChild(el("img", { "class": "face", src: c.img, loading: "lazy", alt: "face crops of " + c.id }));
      if (c.lm) strip.appendChild(el("img", { "class": "lm", src: c.lm, loading: "lazy", alt: "landmarks" }));
      if (c.ps) strip.appendChild(el("img", { "class": "ps", src: c.ps, loading: "lazy", alt: "parsing" }));
    } else {
      strip.appendChild(el("div", { "class": "none" }, "no frames: " + (c.noimg || "failed upstream")));
    }
    node.appendChild(strip);
    var top = el("div", { "class": "top3" });
    c.top.forEach(function (kp) {
      top.appendChild(el("span", {}, labels[kp[0]]));
      var bar = el("div", { "class": "bar" + (kp[0] === c.p ? " pred" : "") + (kp[0] === c.t ? " true" : "") });
      bar.style.width = (100 * kp[1]).toFixed(1) + "%";
      top.appendChild(bar);
      top.appendChild(el("span", {}, pct(kp[1])));
    });
    node.appendChild(top);
    if (c.cap !== undefined) {
      var cap = el("div", { "class": "caption" });
      cap.appendChild(el("b", {}, "caption: "));
      cap.appendChild(document.createTextNode(c.cap));
      if (c.raw !== undefined) {
        cap.appendChild(el("div", { "class": "raw" }, "raw MLLM text: " + c.raw));
      }
      node.appendChild(cap);
    }
    var why = explain(fold, c);
    if (why) node.appendChild(why);
    return node;
  }

  function explain(fold, c) {
    if (!c.w && !c.sp && !c.ls) return null;
    var box = el("div", { "class": "why" });
    if (c.w) {
      var names = fold.levels.length === c.w.length ? fold.levels : c.w.map(function (_, i) { return "level " + i; });
      box.appendChild(el("div", { "class": "weights" }, "modality weights: " + names.map(function (n, i) {
        return n + " " + Number(c.w[i]).toFixed(2);
      }).join(", ")));
    }
    var classes = [c.p];
    if (c.t !== c.p) classes.push(c.t);
    if (c.sp || c.ls) {
      var table = el("table", { "class": "sims" }), head = el("tr");
      head.appendChild(el("th", {}, "similarity"));
      classes.forEach(function (k) { head.appendChild(el("th", {}, fold.labels[k] + (k === c.p ? " (pred)" : " (true)"))); });
      table.appendChild(head);
      var rows = [];
      if (c.sp) rows.push(["positive descriptor", c.sp]);
      if (c.sn) rows.push(["negative descriptor", c.sn]);
      (c.ls || []).forEach(function (scores, i) { rows.push([(fold.score_levels[i] || "level " + i) + " score", scores]); });
      rows.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", {}, r[0]));
        classes.forEach(function (k) { tr.appendChild(el("td", {}, num(r[1][k]))); });
        table.appendChild(tr);
      });
      box.appendChild(table);
    }
    return box;
  }

  function init() {
    var select = $("fold");
    if (!folds.length) { $("status").textContent = "no evaluation with predictions yet"; return; }
    folds.forEach(function (f, i) { select.appendChild(el("option", { value: String(i) }, f.title)); });
    select.addEventListener("change", function () { selectFold(Number(select.value)); });
    $("f-true").addEventListener("change", function (e) { state.t = e.target.value; state.page = 0; render(); });
    $("f-pred").addEventListener("change", function (e) { state.p = e.target.value; state.page = 0; render(); });
    $("f-outcome").addEventListener("change", function (e) { state.outcome = e.target.value; state.page = 0; render(); });
    $("f-sort").addEventListener("change", function (e) { state.sort = e.target.value; state.page = 0; render(); });
    $("f-reset").addEventListener("click", function () {
      state.t = ""; state.p = ""; state.outcome = "all"; state.page = 0; syncControls(); render();
    });
    $("o-landmarks").addEventListener("change", function (e) { $("cards").classList.toggle("show-lm", e.target.checked); });
    $("o-parsing").addEventListener("change", function (e) { $("cards").classList.toggle("show-ps", e.target.checked); });
    selectFold(0);
  }
  init();
}());
