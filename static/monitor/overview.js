/* Overview trend charts: reads the JSON from #trend-data (rendered by the server) and draws
   the rate charts with their 95% Wilson bands, and the stacked category counts. No inline JS. */
(function () {
  "use strict";

  var CATEGORY_COLOURS = {
    live: "#2e7d32",
    attack: "#c62828",
    low_quality: "#f9a825",
    no_face: "#757575",
    unreadable: "#4e342e",
  };
  var RATE_COLOUR = "#2271b1";
  var TOO_FEW_COLOUR = "#b0b0b0";

  function pct(x) {
    return (100 * x).toFixed(1) + "%";
  }

  // Change markers: a dashed vertical line on each day, labelled at the top.
  function markerLayout(markers) {
    var shapes = [];
    var annotations = [];
    markers.forEach(function (m) {
      shapes.push({
        type: "line", xref: "x", yref: "paper", x0: m.day, x1: m.day, y0: 0, y1: 1,
        line: { color: "#8c5a00", width: 1, dash: "dot" },
      });
      annotations.push({
        x: m.day, xref: "x", y: 1, yref: "paper", yanchor: "bottom", showarrow: false,
        text: "▼", hovertext: m.day + ": " + m.text, font: { color: "#8c5a00", size: 10 },
      });
    });
    return { shapes: shapes, annotations: annotations };
  }

  // The band as one polygon per run of consecutive days with data (null-separated; Plotly's
  // "toself" fills each segment on its own), so a day without data is a gap in the band too.
  function band(days, low, high) {
    var xs = [];
    var ys = [];
    var i = 0;
    while (i < days.length) {
      if (low[i] === null) { i += 1; continue; }
      var j = i;
      while (j < days.length && low[j] !== null) { j += 1; }
      if (xs.length) { xs.push(null); ys.push(null); }
      xs = xs.concat(days.slice(i, j), days.slice(i, j).reverse());
      ys = ys.concat(high.slice(i, j), low.slice(i, j).reverse());
      i = j;
    }
    return { x: xs, y: ys };
  }

  function rateChart(el, data, key) {
    var s = data.rates[key];
    var title = s.name + (s.iso ? " (" + s.iso + ")" : "") + " per day, 95% interval";
    var explainable = Boolean(explainHolder(el));
    var hover = data.days.map(function (d, i) {
      if (s.value[i] === null) { return d + ": no data"; }
      return d + " · " + s.name + ": " + pct(s.value[i]) + " (" + s.k[i] + " / " + s.n[i] + ")<br>95% CI " +
        pct(s.low[i]) + " – " + pct(s.high[i]) + (s.too_few[i] ? "<br>too few (n < 30)" : "") +
        (data.decided[i] ? "<br>decided by " + data.decided[i] : "") + "<br>counts " + data.counted +
        (explainable ? "<br><i>click: what changed that day</i>" : "");
    });
    var b = band(data.days, s.low, s.high);
    var traces = [
      {
        x: b.x, y: b.y,
        type: "scatter", mode: "lines", fill: "toself", fillcolor: "rgba(34,113,177,0.18)",
        line: { width: 0 }, hoverinfo: "skip", name: "95% interval", connectgaps: false,
      },
      {
        x: data.days, y: s.value, type: "scatter", mode: "lines+markers", name: s.name,
        connectgaps: false, line: { color: RATE_COLOUR },
        marker: { color: s.too_few.map(function (t) { return t ? TOO_FEW_COLOUR : RATE_COLOUR; }) },
        text: hover, hoverinfo: "text",
      },
    ];
    var m = markerLayout(data.markers);
    Plotly.newPlot(el, traces, {
      title: { text: title, font: { size: 14 }, x: 0.01, xanchor: "left" },
      margin: { t: 40, r: 20, b: 40, l: 50 }, height: 280, showlegend: false,
      xaxis: { type: "date", range: [data.days[0], data.days[data.days.length - 1]] },
      yaxis: { tickformat: ".0%", rangemode: "tozero" },
      shapes: m.shapes, annotations: m.annotations,
    }, { displaylogo: false, responsive: true });
    if (explainable) { linkPoints(el, data, key); }
  }

  // The element carrying the "what changed" URL (rendered with {% url %}) and the device filter.
  function explainHolder(el) {
    var holder = el.closest(".ov-charts");
    return holder && holder.dataset.explainUrl ? holder : null;
  }

  // That day's "what changed" page for the chart's measure, with the page's device filter: the
  // rendered URL is the latest day's, its date swapped for the clicked day.
  function explainUrl(holder, day, measure) {
    var params = new URLSearchParams();
    if (holder.dataset.device) { params.set("device", holder.dataset.device); }
    params.set("measure", measure);
    return holder.dataset.explainUrl.replace(holder.dataset.explainDay, day) + "?" + params.toString();
  }

  // A click on a day's point (the rate line, trace 1; the band takes no hover) opens its
  // explanation; the pointer shows the point can be clicked.
  function linkPoints(el, data, key) {
    var holder = explainHolder(el);
    var drag = function () { return el.querySelector(".nsewdrag"); };
    el.on("plotly_click", function (ev) {
      var pt = ev.points && ev.points[0];
      if (!pt || pt.curveNumber !== 1 || data.rates[key].value[pt.pointIndex] === null) { return; }
      window.location.assign(explainUrl(holder, data.days[pt.pointIndex], key));
    });
    el.on("plotly_hover", function () { if (drag()) { drag().style.cursor = "pointer"; } });
    el.on("plotly_unhover", function () { if (drag()) { drag().style.cursor = ""; } });
  }

  function countsChart(el, data) {
    var traces = Object.keys(data.counts).map(function (c) {
      return {
        x: data.days, y: data.counts[c], type: "bar", name: c.replace("_", " "),
        marker: { color: CATEGORY_COLOURS[c] || null },
      };
    });
    var m = markerLayout(data.markers);
    Plotly.newPlot(el, traces, {
      title: { text: "Images per day by category", font: { size: 14 }, x: 0.01, xanchor: "left" },
      barmode: "stack", margin: { t: 40, r: 20, b: 40, l: 50 }, height: 300,
      xaxis: { type: "date" }, legend: { orientation: "h" },
      shapes: m.shapes, annotations: m.annotations,
    }, { displaylogo: false, responsive: true });
  }

  function draw() {
    var source = document.getElementById("trend-data");
    if (!source || typeof Plotly === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    if (!data) { return; }
    document.querySelectorAll(".ov-chart[data-rate]").forEach(function (el) {
      rateChart(el, data, el.dataset.rate);
    });
    document.querySelectorAll(".ov-chart[data-counts]").forEach(function (el) {
      countsChart(el, data);
    });
  }

  // Changing a selector reloads the page with the new query (the button stays for no-JS use).
  function autoSubmit() {
    document.querySelectorAll("form.ov-filters select").forEach(function (sel) {
      sel.addEventListener("change", function () { sel.form.submit(); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { autoSubmit(); draw(); });
  } else {
    autoSubmit();
    draw();
  }
})();
