// storemon dashboard: draws the page's chart from its #chart-data JSON with uPlot.
// When done, <body data-charts="drawn"> (or "unavailable" without the library, "none" on
// pages without a chart), which is what the browser test waits for.
(function () {
  "use strict";
  const holder = document.querySelector("[data-chart]");
  const source = document.getElementById("chart-data");
  const finish = (state) => { document.body.dataset.charts = state; };
  if (!holder || !source) { finish("none"); return; }
  if (typeof uPlot === "undefined") { finish("unavailable"); return; }

  const data = JSON.parse(source.textContent);
  const width = () => Math.max(320, holder.clientWidth || 800);
  const utc = (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC");
  const chart = holder.dataset.chart === "fleet" ? fleetChart(data) : storeChart(data);
  window.addEventListener("resize", () => chart.setSize({ width: width(), height: chart.height }));
  finish("drawn");

  function fleetChart(d) {
    const options = {
      width: width(),
      height: 220,
      tzDate: utc,
      scales: { x: { time: true }, y: { range: [0, 100] } },
      series: [
        { label: "hour (UTC)" },
        {
          label: "fleet uptime",
          stroke: "#15803d",
          width: 2,
          fill: "rgba(21, 128, 61, 0.12)",
          value: (u, v) => (v == null ? "no store open" : v.toFixed(1) + " %"),
        },
      ],
      axes: [{}, { values: (u, ticks) => ticks.map((v) => v + " %") }],
    };
    return new uPlot(options, [d.x, d.uptime], holder);
  }

  function storeChart(d) {
    // One x array with every boundary and poll time; the bands step at these points.
    const times = new Set([d.lo, d.hi]);
    for (const [a, b] of d.sessions) { times.add(a); times.add(b); }
    for (const [a, b] of d.runs) { times.add(a); times.add(b); }
    for (const [t] of d.polls) times.add(t);
    const x = Array.from(times).sort((p, q) => p - q);
    const inside = (spans, t) => spans.some((s) => s[0] <= t && t < s[1]);
    const upRuns = d.runs.filter((r) => r[2] === 1);
    const downRuns = d.runs.filter((r) => r[2] === 0);
    const pollAt = new Map(d.polls.map(([t, active]) => [t, active]));
    const band = (colour) => ({
      paths: uPlot.paths.stepped({ align: 1 }),
      stroke: "transparent",
      width: 0,
      fill: colour,
      points: { show: false },
    });
    const dots = (colour) => ({
      paths: () => null,
      stroke: colour,
      fill: colour,
      points: { show: true, size: 8, stroke: colour, fill: colour },
    });
    const yesNo = (v) => (v ? "yes" : "no");
    const options = {
      width: width(),
      height: 200,
      tzDate: utc,
      scales: { x: { time: true, range: [d.lo, d.hi] }, y: { range: [0, 3.2] } },
      series: [
        { label: "time (UTC)" },
        { label: "business hours", ...band("rgba(100, 116, 139, 0.18)"), value: (u, v) => yesNo(v) },
        { label: "up", ...band("rgba(22, 163, 74, 0.75)"), value: (u, v) => yesNo(v) },
        { label: "down", ...band("rgba(220, 38, 38, 0.75)"), value: (u, v) => yesNo(v) },
        { label: "poll: active", ...dots("#14532d"), value: (u, v) => (v == null ? "" : "poll") },
        { label: "poll: inactive", ...dots("#7f1d1d"), value: (u, v) => (v == null ? "" : "poll") },
      ],
      axes: [{}, { show: false }],
      legend: { show: false }, // the page has its own legend under the chart
    };
    const series = [
      x,
      x.map((t) => (inside(d.sessions, t) ? 3.2 : 0)),
      x.map((t) => (inside(upRuns, t) ? 2 : 0)),
      x.map((t) => (inside(downRuns, t) ? 2 : 0)),
      x.map((t) => (pollAt.get(t) === 1 ? 2.6 : null)),
      x.map((t) => (pollAt.get(t) === 0 ? 2.6 : null)),
    ];
    return new uPlot(options, series, holder);
  }
})();
