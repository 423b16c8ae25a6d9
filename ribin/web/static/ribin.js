// RIBIN review app: zoom and pan of image viewers, the overlay slider, queue keys.
// Plain JavaScript, no library, loaded from the app itself (no CDN).
"use strict";

function setupViewer(viewer) {
  const viewport = viewer.querySelector(".viewport");
  const stage = viewer.querySelector("[data-stage]");
  const width = Number(stage.dataset.width), height = Number(stage.dataset.height);
  let scale = 1, x = 0, y = 0;
  stage.style.width = width + "px";
  stage.style.height = height + "px";
  function apply() { stage.style.transform = `translate(${x}px, ${y}px) scale(${scale})`; }
  function fit() {
    const box = viewport.getBoundingClientRect();
    scale = Math.min(box.width / width, box.height / height);
    x = (box.width - width * scale) / 2;
    y = (box.height - height * scale) / 2;
    apply();
  }
  function zoomAt(factor, cx, cy) {
    const next = Math.min(64, Math.max(0.05, scale * factor));
    x = cx - (cx - x) * (next / scale);
    y = cy - (cy - y) * (next / scale);
    scale = next;
    apply();
  }
  function centre() {
    const box = viewport.getBoundingClientRect();
    return [box.width / 2, box.height / 2];
  }
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = viewport.getBoundingClientRect();
    zoomAt(event.deltaY < 0 ? 1.25 : 0.8, event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    drag = [event.clientX - x, event.clientY - y];
    viewport.setPointerCapture(event.pointerId);
    viewport.classList.add("dragging");
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    x = event.clientX - drag[0];
    y = event.clientY - drag[1];
    apply();
  });
  const stop = () => { drag = null; viewport.classList.remove("dragging"); };
  viewport.addEventListener("pointerup", stop);
  viewport.addEventListener("pointercancel", stop);
  viewport.addEventListener("dblclick", fit);
  viewer.querySelectorAll("[data-zoom]").forEach((button) => {
    button.addEventListener("click", () => {
      const kind = button.dataset.zoom;
      if (kind === "reset") fit(); else zoomAt(kind === "in" ? 1.5 : 1 / 1.5, ...centre());
    });
  });
  viewer.addEventListener("keydown", (event) => {
    const step = 60;
    const keys = {
      "+": () => zoomAt(1.5, ...centre()), "=": () => zoomAt(1.5, ...centre()),
      "-": () => zoomAt(1 / 1.5, ...centre()), "0": fit,
      ArrowLeft: () => { x += step; apply(); }, ArrowRight: () => { x -= step; apply(); },
      ArrowUp: () => { y += step; apply(); }, ArrowDown: () => { y -= step; apply(); },
    };
    if (keys[event.key] && event.target.tagName !== "INPUT") {
      event.preventDefault();
      keys[event.key]();
    }
  });
  const top = viewer.querySelector("[data-top]");
  const opacity = viewer.querySelector("[data-opacity]");
  if (top && opacity) {
    const set = () => { top.style.opacity = String(Number(opacity.value) / 100); };
    opacity.addEventListener("input", set);
    set();
  }
  const cells = viewer.querySelector("[data-cells]");
  if (cells) {
    const set = () => stage.classList.toggle("hide-cells", !cells.checked);
    cells.addEventListener("change", set);
    set();
  }
  fit();
  window.addEventListener("resize", fit);
}

function setupQueue(table) {
  const rows = Array.from(table.querySelectorAll("tbody tr"));
  if (!rows.length) return;
  let current = 0;
  function select(index) {
    rows[current].classList.remove("selected");
    current = Math.max(0, Math.min(rows.length - 1, index));
    rows[current].classList.add("selected");
    rows[current].scrollIntoView({ block: "nearest" });
  }
  rows.forEach((row, index) => {
    row.addEventListener("click", (event) => {
      if (event.target.tagName === "A") return;
      select(index);
      window.location = row.dataset.href;
    });
  });
  document.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "j") select(current + 1);
    else if (event.key === "k") select(current - 1);
    else if (event.key === "Enter") window.location = rows[current].dataset.href;
    else return;
    event.preventDefault();
  });
  select(0);
}

function setupBusyForms() {
  document.querySelectorAll("form[data-busy]").forEach((form) => {
    form.addEventListener("submit", () => {
      const button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; button.textContent = form.dataset.busy; }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-viewer]").forEach(setupViewer);
  document.querySelectorAll("[data-queue]").forEach(setupQueue);
  setupBusyForms();
});
