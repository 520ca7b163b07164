// The cockpit refreshes itself: the server renders each part of the page; this script only
// re-fetches those parts (HTML fragments, every few seconds) and the chart data (Plotly JSON
// built by the server with the plotly package), and redraws. No data is computed here.
(function () {
  "use strict";
  const C = window.COCKPIT;
  const plotConfig = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"]};
  const stampEl = document.getElementById("refreshed");

  function hkNow() {
    return new Date().toLocaleTimeString("en-GB", {timeZone: "Asia/Hong_Kong", hour12: false}) + " HKT";
  }

  function drawCharts(data) {
    Plotly.react("chart-equity", data.equity.data, data.equity.layout, plotConfig);
    document.querySelectorAll(".symbol-chart").forEach(function (el) {
      const fig = data.symbols[el.dataset.symbol];
      if (fig) Plotly.react(el, fig.data, fig.layout, plotConfig);
    });
  }

  async function get(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}});
    if (response.redirected) {          // the session ended: show the login page
      window.location.reload();
      throw new Error("logged out");
    }
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response;
  }

  async function refreshFragments() {
    for (const slot of document.querySelectorAll("[data-fragment]")) {
      const response = await get(C.fragmentUrl.replace("NAME", slot.dataset.fragment));
      slot.innerHTML = await response.text();
    }
  }

  async function refreshCharts() {
    drawCharts(await (await get(C.chartsUrl)).json());
  }

  drawCharts(JSON.parse(document.getElementById("chart-data").textContent));
  stampEl.textContent = "updated " + hkNow();
  let round = 0;
  let busy = false;
  setInterval(async function () {
    if (busy) return;
    busy = true;
    try {
      await refreshFragments();
      if (++round % 3 === 0) await refreshCharts();
      stampEl.textContent = "updated " + hkNow();
      stampEl.classList.remove("neg");
    } catch (err) {
      stampEl.textContent = "refresh failed at " + hkNow() + ": " + err.message;
      stampEl.classList.add("neg");
    } finally {
      busy = false;
    }
  }, C.refreshMs);
})();
