// Graven web UI: actions without reloads (fetch), live entries (EventSource), the diagram's explanations,
// saved searches. Every page also works without this file: forms post and redirect, links are plain links.
"use strict";

(function () {
  document.documentElement.classList.add("js");
  const base = document.body.dataset.base || "";

  // The form's fields, with the button that submitted it; read before anything changes the form.
  function fields(form, submitter) {
    return new URLSearchParams(new FormData(form, submitter || undefined));
  }

  function post(form, data) {
    return fetch(form.action, {
      method: "POST",
      headers: { "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded" },
      body: data || fields(form),
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          throw new Error(body.error || ("request failed with status " + response.status));
        }
        return body;
      });
    });
  }

  function say(where, text, kind, link) {
    if (!where) return;
    where.replaceChildren();
    const p = document.createElement("p");
    p.className = "alert " + (kind || "good");
    p.textContent = text + " ";
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      p.appendChild(a);
    }
    where.appendChild(p);
  }

  function fromHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function setCounters(counters) {
    if (!counters) return;
    Object.keys(counters).forEach(function (key) {
      document.querySelectorAll('[data-counter="' + key + '"]').forEach(function (cell) {
        if (cell.textContent === String(counters[key])) return;
        cell.textContent = String(counters[key]);
        cell.classList.remove("bump");
        void cell.offsetWidth;
        cell.classList.add("bump");
      });
    });
  }

  // Insert an entry at the top of a live list unless it is already there; true if inserted.
  function addEntry(list, item) {
    const index = Number(item.index);
    if (Number(list.dataset.after) < index) list.dataset.after = String(index);
    if (list.dataset.onlyVisitor && !item.visitor) return false;
    if (list.querySelector('[data-index="' + index + '"]')) return false;
    const node = fromHtml(item.html);
    node.classList.add("fresh");
    let before = null;
    for (const child of list.children) {
      if (Number(child.dataset.index) < index) { before = child; break; }
    }
    list.insertBefore(node, before);
    const empty = document.getElementById("empty-log");
    if (empty) empty.hidden = true;
    return true;
  }

  // The sign-in form's account list follows who is at the keyboard.
  function followPersona(id) {
    const radio = document.querySelector('form.js-persona input[name="persona"][value="' + id + '"]');
    if (radio) radio.checked = true;
    document.querySelectorAll('select[name="account"]').forEach(function (select) {
      if (select.querySelector('option[value="' + id + '"]')) select.value = id;
    });
  }

  // Try it yourself: who is at the keyboard. A click or tap switches at once; the arrow keys only
  // choose (so that passing over a person does not switch to them), and Enter or Switch confirms.
  document.querySelectorAll("form.js-persona").forEach(function (form) {
    let pointer = false;
    form.addEventListener("pointerdown", function () { pointer = true; });
    form.addEventListener("keydown", function () { pointer = false; });
    function switchTo() {
      post(form).then(function (body) {
        document.getElementById("persona").innerHTML = body.html;
        followPersona(body.persona);
        say(document.getElementById("status"), "You are now " + body.name + ".", "good");
      }).catch(function (error) { say(document.getElementById("status"), error.message, "bad"); });
    }
    form.addEventListener("change", function () {
      if (pointer) switchTo();
      pointer = false;
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      switchTo();
    });
  });

  // Try it yourself: every attempt. The result appears under the form; focus stays where it was.
  document.querySelectorAll("form.js-attempt").forEach(function (form) {
    let busy = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      const data = fields(form, event.submitter);
      busy = true;
      form.setAttribute("aria-busy", "true");
      const where = form.querySelector(".form-result");
      post(form, data).then(function (body) {
        const kind = body.outcome === "success" ? "good" : "bad";
        say(where, body.message, kind);
        const list = document.getElementById("try-log");
        body.entries.slice().reverse().forEach(function (item) { addEntry(list, item); });
        setCounters(body.counters);
        document.getElementById("state").innerHTML = body.state_html;
        document.getElementById("persona").innerHTML = body.persona_html;
        const chosen = document.querySelector('form.js-persona input[name="persona"]:checked');
        if (chosen && chosen.value !== body.persona) followPersona(body.persona);  // a sign-in switched
        form.querySelectorAll('input[type="password"]').forEach(function (input) { input.value = ""; });
      }).catch(function (error) {
        say(where, error.message, "bad");
      }).finally(function () {
        busy = false;
        form.removeAttribute("aria-busy");
      });
    });
  });

  document.querySelectorAll("form.js-reset").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      post(form).then(function () { window.location.assign(base + "/try"); })
        .catch(function (error) { say(document.getElementById("status"), error.message, "bad"); });
    });
  });

  // Console and entry page: verify the whole log (the header's badge follows); tamper with it (demo).
  document.querySelectorAll("form.js-verify").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const where = document.getElementById("verify-result");
      say(where, "Verifying every entry, the tree and every checkpoint…", "good");
      post(form).then(function (body) {
        if (body.ok) {
          say(where, body.message, "good");
        } else {
          say(where, "Tampering found: " + body.kind + " at entry #" + body.first_bad_index + ". " + body.message, "bad",
            body.entry_url ? { href: body.entry_url, text: "Open entry #" + body.first_bad_index } : null);
        }
        const badge = document.getElementById("integrity");
        if (badge && body.integrity_html) badge.replaceWith(fromHtml(body.integrity_html));
      }).catch(function (error) { say(where, error.message, "bad"); });
    });
  });

  document.querySelectorAll("form.js-tamper").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      const where = document.getElementById("verify-result");
      post(form).then(function (body) {
        if (form.querySelector('input[name="index"]')) {
          window.location.assign(body.entry_url);
          return;
        }
        say(where, body.message + " Now verify the log.", "bad", { href: body.entry_url, text: "Open entry #" + body.index });
      }).catch(function (error) { say(where, error.message, "bad"); });
    });
  });

  // Live lists: new entries as they are recorded.
  document.querySelectorAll("ol.js-live").forEach(function (list) {
    if (!window.EventSource) return;
    const state = document.getElementById("live-state");
    const url = base + "/events?after=" + encodeURIComponent(list.dataset.after) +
      "&generation=" + encodeURIComponent(list.dataset.generation);
    const source = new EventSource(url);
    source.addEventListener("open", function () {
      if (state) { state.textContent = "live"; state.classList.add("on"); }
    });
    source.addEventListener("error", function () {
      if (state) { state.textContent = "reconnecting…"; state.classList.remove("on"); }
    });
    source.addEventListener("entry", function (event) {
      const item = JSON.parse(event.data);
      addEntry(list, item);
      if (item.counters) setCounters(item.counters);
    });
    source.addEventListener("reset", function () {
      source.close();
      window.location.reload();
    });
  });

  // How it works: explain the part under the pointer, the finger or the keyboard focus, beside the drawing.
  const explain = document.getElementById("explain");
  if (explain) {
    const show = function (node) {
      const key = node.dataset.part;
      const part = document.getElementById("part-" + key);
      if (!part) return;
      document.querySelectorAll(".node.active, .part.active").forEach(function (n) { n.classList.remove("active"); });
      node.classList.add("active");
      part.classList.add("active");
      explain.replaceChildren();
      const title = document.createElement("p");
      title.className = "explain-title";
      title.textContent = part.querySelector("dt").textContent;
      explain.appendChild(title);
      part.querySelectorAll("dd p").forEach(function (p) { explain.appendChild(p.cloneNode(true)); });
    };
    document.querySelectorAll(".node").forEach(function (node) {
      ["mouseenter", "focus"].forEach(function (kind) {
        node.addEventListener(kind, function () { show(node); });
      });
      node.addEventListener("click", function (event) { event.preventDefault(); show(node); });
    });
  }

  // Console: saved searches, kept in this browser only.
  const save = document.getElementById("save-search");
  const saved = document.getElementById("saved");
  if (save && saved) {
    const KEY = "graven.saved-searches";
    const load = function () {
      try { return JSON.parse(window.localStorage.getItem(KEY) || "[]"); } catch (e) { return []; }
    };
    const store = function (items) { window.localStorage.setItem(KEY, JSON.stringify(items)); };
    const draw = function () {
      const items = load();
      const list = document.getElementById("saved-list");
      list.replaceChildren();
      items.forEach(function (item, position) {
        const li = document.createElement("li");
        const a = document.createElement("a");
        a.href = base + "/console?" + item.query;
        a.textContent = item.name;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "secondary small";
        remove.textContent = "Remove";
        remove.setAttribute("aria-label", "Remove the saved search " + item.name);
        remove.addEventListener("click", function () {
          const now = load();
          now.splice(position, 1);
          store(now);
          draw();
          save.focus();
        });
        li.append(a, " ", remove);
        list.appendChild(li);
      });
      saved.hidden = items.length === 0;
    };
    save.addEventListener("click", function () {
      const query = new URLSearchParams(new FormData(save.form));
      Array.from(query.keys()).forEach(function (k) { if (!query.get(k)) query.delete(k); });
      const name = Array.from(query.entries()).filter(function (kv) { return kv[0] !== "limit"; })
        .map(function (kv) { return kv[0] + "=" + kv[1]; }).join(", ") || "everything";
      const items = load().filter(function (item) { return item.query !== query.toString(); });
      items.unshift({ name: name, query: query.toString() });
      store(items.slice(0, 20));
      draw();
      say(document.getElementById("verify-result"), "Saved: " + name + ".", "good");
    });
    draw();
  }
})();
