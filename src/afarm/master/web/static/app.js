// SPDX-License-Identifier: MIT
// The page's live layer: Server-Sent Events trigger a re-fetch of the server-rendered view,
// whose changed parts are swapped in (no polling, no reload); actions go to the job port
// with the token from sessionStorage in an Authorization header.
"use strict";
(function () {
  const TOKEN = "afarm-token";
  const body = document.body;
  const view = body.dataset.view;
  let needAuth = body.dataset.locked === "1";
  // Tests check that a live page was never reloaded: this survives only without a reload.
  window.afarmPageLoaded = window.afarmPageLoaded || Date.now();
  window.afarmStats = { events: 0, refreshes: 0, firstEventAt: null };
  document.documentElement.classList.add("js");

  const $ = (id) => document.getElementById(id);
  const token = () => sessionStorage.getItem(TOKEN) || "";
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  }
  function jobBase() {
    return location.protocol + "//" + location.hostname + ":" + body.dataset.jobPort;
  }
  let toastTimer = null;
  function toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.classList.add("shown");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.remove("shown"), 8000);
  }
  function setLive(text) { $("live-state").textContent = text; }

  // -- times in the browser's zone -----------------------------------------------------
  function localise(root) {
    for (const t of root.querySelectorAll("time[datetime]")) {
      const d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) { t.textContent = d.toLocaleString(); t.title = t.getAttribute("datetime"); }
    }
  }

  // -- media through fetch when reading needs the token --------------------------------
  // Each picture is fetched once and kept as a blob URL (the oldest let go past a bound),
  // so a refresh that renders the same picture again neither fetches nor flickers.
  const blobs = new Map();
  const MAX_BLOBS = 2000;
  const MEDIA = "img[src^='/'], video[src^='/']";
  // In a fresh rendering, before it enters the page (where the browser would load each
  // picture itself, without the token, only to be refused): the cached blob, or none yet.
  function useCached(root) {
    if (!needAuth) return;
    for (const el of root.querySelectorAll(MEDIA)) {
      const src = el.getAttribute("src");
      el.setAttribute("data-auth-src", src);
      const b = blobs.get(src);
      if (b) el.setAttribute("src", b); else el.removeAttribute("src");
    }
  }
  async function authMedia(root) {
    if (!needAuth || !token()) return;
    for (const el of root.querySelectorAll("[data-auth-src]:not([src])")) {
      const src = el.getAttribute("data-auth-src");
      try {
        let url = blobs.get(src);
        if (!url) {
          const r = await fetch(src, { headers: headers() });
          if (!r.ok) continue;
          url = URL.createObjectURL(await r.blob());
          blobs.set(src, url);
          if (blobs.size > MAX_BLOBS) {
            const [oldest, old] = blobs.entries().next().value;
            blobs.delete(oldest);
            URL.revokeObjectURL(old);
          }
        }
        el.setAttribute("src", url);
      } catch (e) { /* the placeholder stays */ }
    }
  }

  // -- swapping in a fresh rendering ---------------------------------------------------
  function keyed(el) { return el.children.length > 0 && Array.from(el.children).every((c) => c.id); }
  function patch(old, fresh) {
    if (old.innerHTML === fresh.innerHTML) return;
    const focus = document.activeElement;
    // Never swap a field out from under the user's typing: the next refresh catches up.
    if (focus && focus.tagName === "INPUT" && old.contains(focus)) { again = true; return; }
    if (keyed(old) && keyed(fresh)) {
      const have = new Map(Array.from(old.children, (c) => [c.id, c]));
      let prev = null;
      for (const c of Array.from(fresh.children)) {
        let cur = have.get(c.id);
        if (cur) {
          have.delete(c.id);
          if (cur.outerHTML !== c.outerHTML) {
            const n = document.importNode(c, true);
            cur.replaceWith(n);
            cur = n;
          }
        } else {
          cur = document.importNode(c, true);
        }
        const want = prev ? prev.nextSibling : old.firstChild;
        if (want !== cur) old.insertBefore(cur, want);
        prev = cur;
      }
      for (const gone of have.values()) gone.remove();
    } else {
      old.innerHTML = fresh.innerHTML;
    }
  }
  function apply(doc) {
    useCached(doc);
    document.title = doc.title;
    const icon = doc.getElementById("favicon");
    if (icon) $("favicon").setAttribute("href", icon.getAttribute("href"));
    const main = $("main");
    if (doc.body.dataset.locked === "1") {
      needAuth = true;
      if (!$("locked")) main.innerHTML = doc.getElementById("main").innerHTML;
      return;
    }
    if ($("locked") || !main.querySelector("[data-swap]")) {
      main.innerHTML = doc.getElementById("main").innerHTML;
      if (doc.body.dataset.job) body.dataset.job = doc.body.dataset.job;
      // Listen from where this rendering stands (a page that asked for the token had none).
      if (!started) body.dataset.lastEvent = doc.body.dataset.lastEvent || "0";
    } else {
      for (const fresh of doc.querySelectorAll("[data-swap]")) {
        const old = fresh.id && $(fresh.id);
        if (old) patch(old, fresh);
      }
    }
    localise(main);
    authMedia(main);
  }
  let busy = false, again = false, timer = null, last = 0, hiddenChanges = false;
  function schedule() {
    // A tab in the background only notes that something changed; it catches up when shown.
    if (document.hidden) { hiddenChanges = true; return; }
    if (timer) return;
    timer = setTimeout(() => { timer = null; refresh(); }, Math.max(50, 700 - (Date.now() - last)));
  }
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    last = Date.now();
    try {
      const r = await fetch(location.pathname + location.search,
        { headers: headers({ Accept: "text/html" }), cache: "no-store" });
      if (r.status === 401 && token()) toast("The master refused this token.");
      apply(new DOMParser().parseFromString(await r.text(), "text/html"));
      window.afarmStats.refreshes++;
      if (needAuth && token()) startEvents();
    } catch (e) {
      setLive("cannot reach the master: " + e.message);
    } finally {
      busy = false;
      if (again) { again = false; schedule(); }
    }
  }

  // -- events ----------------------------------------------------------------------------
  function relevant(ev) {
    const k = ev.kind || "";
    if (view === "jobs") return k.startsWith("job-") || k.startsWith("task-");
    if (view === "slaves") return k.startsWith("slave-") || k.startsWith("task-");
    if (view === "log") return false;
    return true;
  }
  function onEvent(ev) {
    window.afarmStats.events++;
    if (ev.id) body.dataset.lastEvent = String(ev.id);
    if (window.afarmStats.firstEventAt === null) window.afarmStats.firstEventAt = performance.now();
    if (relevant(ev)) schedule();
  }
  function eventsUrl() {
    let q = "?after=" + (body.dataset.lastEvent || "0");
    if (body.dataset.job && view !== "jobs" && view !== "slaves") q += "&job=" + body.dataset.job;
    return "/api/v1/events" + q;
  }
  let started = false;
  function startEvents() {
    if (started || view === "log" || view === "none") return;
    started = true;
    if (!needAuth && window.EventSource) {
      const es = new EventSource(eventsUrl());
      const handler = (m) => { try { onEvent(JSON.parse(m.data)); } catch (e) { /* not JSON */ } };
      es.onmessage = handler;
      for (const k of KINDS) es.addEventListener(k, handler);
      es.onopen = () => { setLive("live"); window.afarmStats.openAt = performance.now(); };
      es.onerror = () => setLive("reconnecting…");
      return;
    }
    streamEvents();
  }
  const KINDS = ["job-accepted", "job-active", "job-completed", "job-failed", "job-canceled",
    "job-paused", "job-resumed", "job-requeued", "job-queued", "job-priority", "task-active", "task-completed",
    "task-failed", "task-soft-failed", "task-requeued", "task-canceled", "task-queued",
    "task-paused", "slave-state", "slave-benchmarked", "slave-blocklisted", "frame-saved",
    // A completed task's warnings (the job then shows completed-with-warnings).
    "task-warnings"];
  // EventSource cannot send a header: with a token, read the same stream through fetch.
  async function streamEvents() {
    let after = body.dataset.lastEvent || "0";
    for (;;) {
      try {
        const url = eventsUrl().replace(/after=\d+/, "after=" + after);
        const r = await fetch(url, { headers: headers({ Accept: "text/event-stream" }) });
        if (!r.ok) throw new Error("HTTP " + r.status);
        setLive("live");
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            for (const line of block.split("\n")) {
              if (line.startsWith("id: ")) after = line.slice(4);
              if (line.startsWith("data: ")) { try { onEvent(JSON.parse(line.slice(6))); } catch (e) { /* skip */ } }
            }
          }
        }
      } catch (e) { /* reconnect below */ }
      setLive("reconnecting…");
      await new Promise((res) => setTimeout(res, 3000));
    }
  }

  // -- the job port ------------------------------------------------------------------------
  async function jobApi(method, path, payload, type) {
    if (!token()) throw new Error("Type the master's token in the Token field first.");
    const h = headers(type ? { "Content-Type": type } : {});
    return fetch(jobBase() + path, { method, headers: h, body: payload, mode: "cors",
      credentials: "omit", cache: "no-store" });
  }
  async function errorOf(r) {
    try { return (await r.json()).error || r.statusText; } catch (e) { return r.statusText; }
  }
  async function act(path, what, button, payload) {
    button.disabled = true;
    try {
      const r = await jobApi("POST", path, JSON.stringify(payload || {}), "application/json");
      if (r.status === 404 || r.status === 405) toast("This master does not offer “" + what + "” yet.");
      else if (!r.ok) toast(what + ": " + await errorOf(r));
      else toast(what + ": done");
      schedule();
    } catch (e) {
      toast(e.message);
    } finally {
      button.disabled = false;
    }
  }
  document.addEventListener("click", (ev) => {
    const p = ev.target.closest("button[data-priority-job]");
    if (p) {
      const id = p.dataset.priorityJob;
      const value = Number($("priority-" + id).value);
      p.disabled = true;
      jobApi("POST", `/api/v1/jobs/${encodeURIComponent(id)}/priority`,
        JSON.stringify({ priority: value }), "application/json")
        .then(async (r) => toast(r.ok ? `job ${id}: priority ${value}` : "priority: " + await errorOf(r)),
          (e) => toast(e.message))
        .finally(() => { p.disabled = false; schedule(); });
      return;
    }
    const b = ev.target.closest("button[data-job-action], button[data-slave-action]");
    if (b && b.dataset.jobAction) {
      act(`/api/v1/jobs/${encodeURIComponent(b.dataset.jobId)}/${b.dataset.jobAction}`,
        `${b.dataset.jobAction} job ${b.dataset.jobId}`, b);
    } else if (b) {
      const fp = b.dataset.fingerprint;
      // Accepting trusts the host key shown: the admin confirms that it is the machine's.
      if (b.dataset.slaveAction === "accept" &&
          !window.confirm(`Accept ${b.dataset.slave} with host key ${fp}? Compare it with`
            + " the key the machine shows (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).")) return;
      act(`/api/v1/slaves/${encodeURIComponent(b.dataset.slave)}/${b.dataset.slaveAction}`,
        `${b.dataset.slaveAction} ${b.dataset.slave}`, b, fp ? { fingerprint: fp } : {});
    }
    const a = ev.target.closest("a[download]");
    if (a && needAuth && token()) {
      ev.preventDefault();
      fetch(a.getAttribute("href"), { headers: headers() }).then((r) => r.blob()).then((blob) => {
        const tmp = document.createElement("a");
        tmp.href = URL.createObjectURL(blob);
        tmp.download = a.getAttribute("href").split("/").pop();
        tmp.click();
      }, (e) => toast(e.message));
    }
  });

  const hashed = new WeakMap();  // File -> sha256: a second try does not hash again
  // The dependency report, built as text nodes (paths and names come from the .blend).
  function showDependencies(deps) {
    const box = $("deps");
    box.replaceChildren();
    const head = document.createElement("p");
    const total = deps.dependencies.length;
    head.textContent = deps.missing
      ? `${deps.missing} of ${total} files ${deps.blend} needs are missing:`
      : `All ${total} files ${deps.blend} needs are uploaded.`;
    head.className = deps.missing ? "warn" : "";
    box.append(head);
    const list = document.createElement("ul");
    list.id = "deps-list";
    for (const d of deps.dependencies) {
      const li = document.createElement("li");
      li.className = d.present ? "present" : "warn";
      li.dataset.present = d.present ? "1" : "0";
      const path = document.createElement("code");
      path.textContent = d.path;
      li.append(path, " — " + (d.present ? "uploaded" : "missing"
        + (d.reason ? ` (${d.reason})` : "")) + ", wanted by " + d.wanted_by.join(", "));
      list.append(li);
    }
    box.append(list);
    box.hidden = false;
  }

  async function submit(form) {
    const state = $("submit-state");
    const v = (n) => (form.elements[n].value || "").trim();
    const file = form.elements.file.files[0];
    const params = {};
    if (v("frames")) params.frames = v("frames");
    if (v("chunk")) params.chunk = Number(v("chunk"));
    if (v("tiles")) params.tiles = v("tiles");
    if (v("encode")) params.encode = v("encode");
    const items = v("items").split("\n").map((s) => s.trim()).filter((s) => s);
    if (items.length) params.items = items;
    const request = { name: v("name") || (file ? file.name : v("application")),
      application: v("application"), params, priority: Number(v("priority") || 50) };
    const check = async (r) => { if (!r.ok) throw new Error(await errorOf(r)); return r; };
    // The input file, then files and a folder beside it, by the names the job sees.
    const inputs = file ? [[file.name, file]] : [];
    if (file) {
      const folder = Array.from(form.elements.dir.files);
      // The input picked from inside the project folder: the folder is the project, its
      // files keep their paths below its top (shots/a.blend beside assets/), so that
      // //../assets/x.blend is found where the .blend looks for it.
      const same = (f) => f.name === file.name && f.size === file.size
        && f.lastModified === file.lastModified;
      const within = folder.find(same);
      const below = (f) => (f.webkitRelativePath || f.name).split("/").slice(1).join("/") || f.name;
      if (within) inputs[0][0] = below(within);
      for (const f of form.elements.extra.files) inputs.push([f.name, f]);
      for (const f of folder) {
        if (f === within) continue;
        inputs.push([within ? below(f) : (f.webkitRelativePath || f.name), f]);
      }
    } else if (form.elements.extra.files.length || form.elements.dir.files.length) {
      throw new Error("files beside the input need the input file itself");
    }
    if (inputs.length) {
      // A dry run first: a typo in the frames never costs the upload.
      request.files = inputs.map(([name]) => ({ name, sha256: "0".repeat(64) }));
      await check(await jobApi("POST", "/api/v1/jobs?dry_run=1", JSON.stringify(request), "application/json"));
      request.files = [];
      let n = 0;
      for (const [name, f] of inputs) {
        n++;
        let sha = hashed.get(f);
        if (!sha) {
          sha = await window.afarmSha256.sha256File(f, (done, size) => {
            state.textContent = `hashing ${n}/${inputs.length}: ${Math.round(100 * done / (size || 1))}%`;
          });
          hashed.set(f, sha);
        }
        const has = await jobApi("HEAD", "/api/v1/files/" + sha);
        if (has.status === 404) {
          state.textContent = `uploading ${n}/${inputs.length}…`;
          // ?kind=blend: a master that checks .blend files refuses a broken one at once.
          const kind = n === 1 && /\.blend$/i.test(name) ? "?kind=blend" : "";
          await check(await jobApi("PUT", "/api/v1/files/" + sha + kind, f, "application/octet-stream"));
        } else {
          await check(has);
        }
        request.files.push({ name, sha256: sha });
      }
      if (/\.blend$/i.test(request.files[0].name)) {
        state.textContent = "finding the files the .blend needs…";
        const report = await check(await jobApi("POST",
          "/api/v1/files/" + request.files[0].sha256 + "/dependencies",
          JSON.stringify({ blend: request.files[0].name, files: request.files }), "application/json"));
        const deps = await report.json();
        showDependencies(deps);
        // As afarmctl submit without --allow-missing: a missing file makes wrong frames.
        if (deps.missing && !form.elements.allow_missing.checked) {
          throw new Error(`${deps.missing} of the files ${request.files[0].name} needs`
            + " are missing: choose the project's folder (the .blend picked from inside it),"
            + " or tick “render anyway”");
        }
      }
    }
    const r = await check(await jobApi("POST", "/api/v1/jobs", JSON.stringify(request), "application/json"));
    const job = await r.json();
    state.textContent = `job ${job.id} accepted`;
    toast(`Job ${job.id} accepted: ${job.progress.tasks} tasks`);
    schedule();
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && hiddenChanges) { hiddenChanges = false; schedule(); }
  });

  function init() {
    const form = $("token-form");
    const shown = () => { $("token-state").textContent = token() ? "token kept for this tab" : "no token"; };
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const t = $("token").value.trim();
      if (t) sessionStorage.setItem(TOKEN, t);
      $("token").value = "";
      shown();
      if (needAuth) refresh();
    });
    $("token-forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN); shown(); });
    shown();
    const sf = $("submit-form");
    if (sf) {
      sf.addEventListener("submit", (ev) => {
        ev.preventDefault();
        $("s-submit").disabled = true;
        submit(sf).catch((e) => { $("submit-state").textContent = e.message; toast("Submit: " + e.message); })
          .finally(() => { $("s-submit").disabled = false; });
      });
    }
    localise(document);
    if (needAuth) {
      if (token()) refresh();
    } else {
      startEvents();
    }
  }
  init();
})();
