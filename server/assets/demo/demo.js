// The demo page served at /demo: the SDK's web build (embedded in the server binary) in a
// room of this server. `?room=` picks the room, `?server=ws://HOST:PORT` another server.
import init, { RookeryClient } from "/demo/assets/sdk/rookery_client.js";

await init();
const params = new URLSearchParams(location.search);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const server = params.get("server") || `${scheme}://${location.host}`;
const room = params.get("room") || "demo";
const $ = (id) => document.getElementById(id);
$("room-name").textContent = room;

const client = new RookeryClient(server, { room });
window.rookery = client;
client.onState((state) => { $("state").textContent = state; });

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  client.login({ name: $("name").value });
});

client.subscribe("chat", ({ message, user }) => {
  const li = document.createElement("li");
  li.textContent = `${user.properties.name || "guest " + user.suffix}: ${message}`;
  $("messages").append(li);
  $("messages").scrollTop = $("messages").scrollHeight;
});
$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if ($("chat").value) client.chat($("chat").value);
  $("chat").value = "";
});

const poll = client.poll("lunch");
poll.onUpdate(({ stats }) => {
  $("votes-pizza").textContent = stats.pizza || 0;
  $("votes-sushi").textContent = stats.sushi || 0;
});
for (const b of document.querySelectorAll(".vote")) {
  b.addEventListener("click", () => poll.vote(b.dataset.answer));
}

const counter = client.counter("clicks");
counter.onChange(({ value }) => { $("counter").textContent = value; });
$("plus").addEventListener("click", () => counter.add(1));

const presence = client.presence();
const renderMembers = () => {
  $("count").textContent = presence.count;
  $("members").replaceChildren(...presence.members.map((m) => {
    const li = document.createElement("li");
    li.textContent = m.properties.name || `guest ${m.suffix}`;
    return li;
  }));
};
presence.onJoin(renderMembers);
presence.onLeave(renderMembers);
presence.onUpdate(renderMembers);
client.subscribe("presence", renderMembers);
