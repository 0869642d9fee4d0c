/* Draws the call report's charts with Chart.js from the JSON in #report-data (see render.py). */
(function () {
  "use strict";

  var INK = "#334155";
  var MUTED = "#64748b";
  var GRID = "#eef2f7";
  var ACCENT = "#2563eb";
  var RATE = "#f59e0b";
  var HEAT = ["#dbeafe", "#93c5fd", "#2563eb", "#1e3a8a"];
  var NO_CALLS = "#ffffff";

  var number = new Intl.NumberFormat("en-US");
  function pct(value) { return value === null || value === undefined ? "–" : value.toFixed(1) + "%"; }
  function plural(n, word) { return number.format(n) + " " + word + (n === 1 ? "" : "s"); }

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = MUTED;
  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  Chart.defaults.plugins.legend.labels.boxHeight = 12;
  Chart.defaults.plugins.tooltip.backgroundColor = "rgba(15, 23, 42, 0.92)";
  Chart.defaults.plugins.tooltip.padding = 10;
  Chart.defaults.plugins.tooltip.cornerRadius = 6;

  function axisTitle(text) {
    return { display: true, text: text, color: INK, font: { weight: "600" } };
  }

  function interpolate(stops, t) {
    t = Math.max(0, Math.min(1, t));
    var scaled = t * (stops.length - 1);
    var i = Math.min(Math.floor(scaled), stops.length - 2);
    var f = scaled - i;
    var a = parseInt(stops[i].slice(1), 16);
    var b = parseInt(stops[i + 1].slice(1), 16);
    var channel = function (shift) {
      var x = (a >> shift) & 255;
      var y = (b >> shift) & 255;
      return Math.round(x + (y - x) * f);
    };
    return "rgb(" + channel(16) + ", " + channel(8) + ", " + channel(0) + ")";
  }

  // Writes each bar's share at its end (horizontal bar charts).
  var shareLabels = {
    id: "shareLabels",
    afterDatasetsDraw: function (chart, args, options) {
      if (!options.labels) { return; }
      var ctx = chart.ctx;
      ctx.save();
      ctx.font = "600 12px " + Chart.defaults.font.family;
      ctx.fillStyle = INK;
      ctx.textBaseline = "middle";
      chart.getDatasetMeta(0).data.forEach(function (bar, i) {
        ctx.fillText(options.labels[i], bar.x + 6, bar.y);
      });
      ctx.restore();
    }
  };

  var builders = {
    daily: function (spec) {
      return {
        type: "bar",
        data: {
          labels: spec.labels,
          datasets: [
            {
              type: "line", label: "Answer rate (%)", data: spec.answerRate, yAxisID: "rate",
              borderColor: RATE, backgroundColor: RATE, borderWidth: 2, pointRadius: 2.5,
              pointHoverRadius: 4, tension: 0.25, spanGaps: true, order: 1
            },
            {
              type: "bar", label: "Calls", data: spec.calls, yAxisID: "calls",
              backgroundColor: "rgba(37, 99, 235, 0.78)", hoverBackgroundColor: ACCENT,
              borderRadius: 2, maxBarThickness: 28, order: 2
            }
          ]
        },
        options: {
          interaction: { mode: "index", intersect: false },
          plugins: {
            legend: { position: "top", align: "end" },
            tooltip: {
              callbacks: {
                title: function (items) { return spec.dates[items[0].dataIndex]; },
                label: function (item) {
                  var i = item.dataIndex;
                  if (item.dataset.yAxisID === "rate") {
                    return " Answer rate: " + pct(spec.answerRate[i]) + " (" +
                      number.format(spec.answered[i]) + " answered)";
                  }
                  return " Calls: " + number.format(spec.calls[i]);
                }
              }
            }
          },
          scales: {
            x: { title: axisTitle("Call date"), grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
            calls: {
              type: "linear", position: "left", beginAtZero: true, title: axisTitle("Calls"),
              grid: { color: GRID }, ticks: { precision: 0 }
            },
            rate: {
              type: "linear", position: "right", min: 0, max: 100, title: axisTitle("Answer rate (%)"),
              grid: { drawOnChartArea: false }, ticks: { callback: function (v) { return v + "%"; } }
            }
          }
        }
      };
    },

    hbar: function (spec) {
      return {
        type: "bar",
        data: {
          labels: spec.labels,
          datasets: [{
            label: "Calls", data: spec.values, backgroundColor: spec.colours,
            borderRadius: 3, maxBarThickness: 26
          }]
        },
        options: {
          indexAxis: "y",
          layout: { padding: { right: 56 } },
          plugins: {
            legend: { display: false },
            shareLabels: { labels: spec.shares.map(pct) },
            tooltip: {
              callbacks: {
                label: function (item) {
                  return " " + plural(spec.values[item.dataIndex], "call") + " (" +
                    pct(spec.shares[item.dataIndex]) + " of calls)";
                }
              }
            }
          },
          scales: {
            x: { beginAtZero: true, title: axisTitle(spec.xTitle), grid: { color: GRID }, ticks: { precision: 0 } },
            y: { grid: { display: false }, ticks: { color: INK } }
          }
        },
        plugins: [shareLabels]
      };
    },

    heatmap: function (spec) {
      var byCell = {};
      spec.cells.forEach(function (c) { byCell[c.y + " " + c.x] = c; });
      var cells = [];
      spec.yLabels.forEach(function (y) {
        spec.xLabels.forEach(function (x) {
          cells.push(byCell[y + " " + x] || { x: x, y: y, calls: 0, answered: 0, rate: null });
        });
      });
      return {
        type: "matrix",
        data: {
          datasets: [{
            label: "Answer rate", data: cells,
            backgroundColor: function (ctx) {
              var raw = ctx.raw;
              if (!raw || raw.rate === null) { return NO_CALLS; }
              return interpolate(HEAT, (raw.rate - spec.scale[0]) / (spec.scale[1] - spec.scale[0]));
            },
            borderColor: function (ctx) {
              return ctx.raw && ctx.raw.calls ? "#ffffff" : "#e2e8f0";
            },
            borderWidth: 1,
            width: function (ctx) { var a = ctx.chart.chartArea; return a ? a.width / spec.xLabels.length - 1 : 0; },
            height: function (ctx) { var a = ctx.chart.chartArea; return a ? a.height / spec.yLabels.length - 1 : 0; }
          }]
        },
        options: {
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                title: function (items) {
                  var raw = items[0].raw;
                  return raw.y + " " + raw.x + ":00–" + raw.x + ":59";
                },
                label: function (item) {
                  var raw = item.raw;
                  if (!raw.calls) { return " No calls"; }
                  return " Answer rate " + pct(raw.rate) + ": " + number.format(raw.answered) +
                    " of " + plural(raw.calls, "call") + " answered";
                }
              }
            }
          },
          scales: {
            x: {
              type: "category", labels: spec.xLabels, offset: true, title: axisTitle(spec.xTitle),
              grid: { display: false }, border: { display: false }, ticks: { maxRotation: 0 }
            },
            y: {
              type: "category", labels: spec.yLabels, offset: true, reverse: false, title: axisTitle(spec.yTitle),
              grid: { display: false }, border: { display: false }, ticks: { color: INK }
            }
          }
        }
      };
    },

    histogram: function (spec) {
      return {
        type: "bar",
        data: {
          labels: spec.labels,
          datasets: [{
            label: spec.yTitle, data: spec.values, backgroundColor: "rgba(37, 99, 235, 0.78)",
            hoverBackgroundColor: ACCENT, barPercentage: 1, categoryPercentage: 0.94, borderRadius: 2
          }]
        },
        options: {
          plugins: {
            legend: { display: false },
            tooltip: {
              callbacks: {
                title: function (items) { return "Talk share " + items[0].label; },
                label: function (item) { return " " + plural(item.raw, "transcribed call"); }
              }
            }
          },
          scales: {
            x: { title: axisTitle(spec.xTitle), grid: { display: false }, ticks: { maxRotation: 0, autoSkip: false, font: { size: 11 } } },
            y: { beginAtZero: true, title: axisTitle(spec.yTitle), grid: { color: GRID }, ticks: { precision: 0 } }
          }
        }
      };
    },

    ranges: function (spec) {
      var p = spec.percentiles; // [p10, p25, median, p75, p90] per rep, in %
      var tick = function (m) { return [Math.max(m - 0.5, 0), Math.min(m + 0.5, 100)]; };
      return {
        type: "bar",
        data: {
          labels: spec.labels,
          datasets: [
            {
              label: "10th–90th percentile", data: p.map(function (r) { return [r[0], r[4]]; }),
              backgroundColor: "#94a3b8", barThickness: 2, grouped: false, order: 3
            },
            {
              label: "Middle half of calls", data: p.map(function (r) { return [r[1], r[3]]; }),
              backgroundColor: "rgba(147, 197, 253, 0.85)", borderColor: ACCENT, borderWidth: 1,
              borderSkipped: false, barThickness: 14, grouped: false, order: 2
            },
            {
              label: "Median", data: p.map(function (r) { return tick(r[2]); }),
              backgroundColor: "#1e3a8a", barThickness: 20, grouped: false, order: 1
            }
          ]
        },
        options: {
          indexAxis: "y",
          interaction: { mode: "index", intersect: false, axis: "y" },
          plugins: {
            legend: { display: false },
            tooltip: {
              filter: function (item) { return item.datasetIndex === 2; },
              callbacks: {
                label: function (item) {
                  var r = p[item.dataIndex];
                  return [
                    " Median " + pct(r[2]) + " over " + plural(spec.calls[item.dataIndex], "transcribed call"),
                    " Middle half " + pct(r[1]) + " – " + pct(r[3]),
                    " 10th–90th percentile " + pct(r[0]) + " – " + pct(r[4])
                  ];
                }
              }
            }
          },
          scales: {
            x: {
              min: 0, max: 100, title: axisTitle(spec.xTitle), grid: { color: GRID },
              ticks: { stepSize: 10, callback: function (v) { return v + "%"; } }
            },
            y: { grid: { display: false }, ticks: { color: INK } }
          }
        }
      };
    }
  };

  // A table wider than its box (a narrow window) shows a hint and a fade until scrolled to its end.
  function markOverflow() {
    document.querySelectorAll(".table-box").forEach(function (box) {
      var scroller = box.querySelector(".table-scroll");
      var overflows = scroller.scrollWidth > scroller.clientWidth + 1;
      box.classList.toggle("overflows", overflows);
      box.classList.toggle("at-end",
        scroller.scrollLeft + scroller.clientWidth >= scroller.scrollWidth - 1);
    });
  }
  document.querySelectorAll(".table-box .table-scroll").forEach(function (scroller) {
    scroller.addEventListener("scroll", markOverflow, { passive: true });
  });
  window.addEventListener("resize", markOverflow);
  markOverflow();

  var payload = JSON.parse(document.getElementById("report-data").textContent);
  payload.charts.forEach(function (spec) {
    var canvas = document.getElementById("chart-" + spec.id);
    if (!canvas) { return; }
    if (spec.kind === "ranges") {
      // one row per rep; the histogram beside it gets the same height
      var height = Math.max(280, 34 * spec.labels.length + 70) + "px";
      canvas.parentNode.style.height = height;
      var beside = document.getElementById("chart-talk-share");
      if (beside) { beside.parentNode.style.height = height; }
    }
    new Chart(canvas, builders[spec.kind](spec));
    canvas.setAttribute("data-drawn", "true");
  });
})();
