// The map page: regions shaded by energy in the period, terminals clustered and coloured by state.
"use strict";
var STATE_COLOURS = {online: "#1a9850", silent: "#f39c12", offline: "#c0392b", unknown: "#7f8c8d"};

function shade(kwh, max) {
  // light yellow to deep red as the region's share of the largest grows (square root: one busy cell in town
  // must not wash out every other region)
  var f = max > 0 ? Math.sqrt(Math.min(1, Math.max(0, kwh) / max)) : 0;
  var r = 255, g = Math.round(237 - 180 * f), b = Math.round(160 - 140 * f);
  return "rgb(" + r + "," + g + "," + b + ")";
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, function (c) {
    return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
  });
}

document.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("map");
  var status = document.getElementById("map-status");
  if (typeof L === "undefined") {
    status.textContent = "the map library is not installed on the server (make web-deps)";
    return;
  }
  var t0 = performance.now();
  var map = L.map(el, {preferCanvas: true, maxZoom: 19, minZoom: 2, zoomSnap: 0.25});
  if (el.dataset.tiles) {
    L.tileLayer(el.dataset.tiles, {maxZoom: 19, attribution: el.dataset.attribution || ""}).addTo(map);
  }
  var regionLayer = L.geoJSON(null).addTo(map);
  var cluster = L.markerClusterGroup({maxClusterRadius: 50, chunkedLoading: true});
  map.addLayer(cluster);
  window.bdmeterMap = {map: map, cluster: cluster, regions: regionLayer, terminals: [], ready: false};
  var params = new URLSearchParams(new FormData(document.getElementById("period")));
  fetch("/api/map?" + params.toString(), {credentials: "same-origin"}).then(function (r) {
    if (!r.ok) throw new Error("the server answered " + r.status);
    return r.json();
  }).then(function (data) {
    var tFetched = performance.now();
    var max = 0;
    data.regions.features.forEach(function (f) { max = Math.max(max, parseFloat(f.properties.energy_kwh)); });
    regionLayer.addData(data.regions);
    regionLayer.setStyle(function (f) {
      return {color: "#555", weight: 1, fillOpacity: 0.55, fillColor: shade(parseFloat(f.properties.energy_kwh), max)};
    });
    regionLayer.eachLayer(function (l) {
      var p = l.feature.properties;
      l.bindTooltip(esc(p.name) + ": " + esc(p.energy_kwh) + " kWh (" + p.meters + " meters)");
    });
    var markers = data.terminals.map(function (t) {
      var m = L.circleMarker([t.lat, t.lon], {radius: 7, color: "#222", weight: 1, fillOpacity: 0.9,
                                              fillColor: STATE_COLOURS[t.state] || "#333"});
      m.bindPopup("<a href=\"/terminal/" + encodeURIComponent(t.tid) + "\">" + esc(t.tid) + "</a><br>" +
                  esc(t.state) + " · " + esc(t.meters.join(" ")) + "<br>last seen " + esc(t.seen));
      m.options.tid = t.tid;
      return m;
    });
    cluster.addLayers(markers);

    var bounds = L.latLngBounds(data.terminals.map(function (t) { return [t.lat, t.lon]; }));
    if (regionLayer.getLayers().length) bounds.extend(regionLayer.getBounds());
    if (bounds.isValid()) map.fitBounds(bounds.pad(0.05)); else map.setView([35, 105], 4);
    // transformer areas at their supply meter: red when the line-loss rate is flagged
    // (drawn once the map has a view: a circle's size needs the zoom)
    (data.areas || []).forEach(function (a) {
      L.circle([a.lat, a.lon], {radius: 400, color: a.flagged ? "#c0392b" : "#2471a3", weight: a.flagged ? 4 : 2,
                                fill: false, dashArray: a.incomplete ? "4 4" : null})
        .bindTooltip(esc(a.area) + ": line loss " + esc(a.rate) + (a.flagged ? " (FLAGGED)" : ""))
        .addTo(map);
    });
    window.bdmeterMap.areas = data.areas || [];
    var counts = {};
    data.terminals.forEach(function (t) { counts[t.state] = (counts[t.state] || 0) + 1; });
    document.getElementById("legend").innerHTML = Object.keys(STATE_COLOURS).map(function (s) {
      return "<span class=\"dot\" style=\"background:" + STATE_COLOURS[s] + "\"></span>" + s + " " + (counts[s] || 0);
    }).join(" &nbsp; ") + " &nbsp; · regions shaded by energy, darkest " + max.toFixed(2) + " kWh; total " +
      esc(data.total_kwh) + " kWh";
    window.bdmeterMap.terminals = data.terminals;
    window.bdmeterMap.fetchMs = tFetched - t0;
    window.bdmeterMap.renderMs = performance.now() - t0;
    window.bdmeterMap.ready = true;
    el.dataset.ready = "1";
    status.textContent = data.terminals.length + " terminals";
  }).catch(function (e) {
    status.textContent = "could not load the map data: " + (e && e.message ? e.message : e);
    if (window.console) console.error(e && e.stack ? e.stack : e);
  });
});
