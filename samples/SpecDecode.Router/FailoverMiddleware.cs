using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace SpecDecode.Router;

/// <summary>
/// The first step of the proxy pipeline: finds the request's conversation, and when the chosen replica cannot be
/// reached (the request never got there) takes that replica out for a while and sends the request to the next one.
/// </summary>
/// <remarks>
/// YARP has no retries of its own (a proxied request may not be safe to repeat). Here a retry happens only when
/// forwarding failed before any response byte was sent and the failure is on connecting or sending the request, so
/// the replica did not start generating; the conversation then starts cold on the next replica of its ranking.
/// A replica that dies in the middle of a response cannot be hidden this way: the client sees the broken response and
/// calls again, and that call goes to a live replica.
/// </remarks>
internal sealed class FailoverMiddleware(IDestinationHealthUpdater health, RouterOptions options, ILogger<FailoverMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context, Func<Task> next)
    {
        context.Items[ConversationKey.ItemKey] = await ConversationKey.FindAsync(context.Request, options);
        IReverseProxyFeature proxy = context.GetReverseProxyFeature();
        context.Response.OnStarting(() =>
        {
            if (proxy.ProxiedDestination is { } served)
            {
                context.Response.Headers[RouterOptions.ReplicaHeader] = served.DestinationId;
            }
            return Task.CompletedTask;
        });
        var tried = new HashSet<string>(StringComparer.Ordinal);
        for (int attempt = 1; ; attempt++)
        {
            await next();
            IForwarderErrorFeature? error = context.Features.Get<IForwarderErrorFeature>();
            DestinationState? failed = proxy.ProxiedDestination;
            if (error is null || failed is null || context.Response.HasStarted || !NeverReachedTheReplica(error) || attempt >= options.MaxAttempts)
            {
                return;
            }
            tried.Add(failed.DestinationId);
            logger.LogWarning("Replica {Replica} could not be reached ({Error}); trying another for conversation {Conversation}.",
                failed.DestinationId, error.Error, context.Items[ConversationKey.ItemKey] ?? "(none)");
            health.SetPassive(proxy.Route.Cluster!, failed, DestinationHealth.Unhealthy, TimeSpan.FromSeconds(options.ReactivationSeconds));
            List<DestinationState> rest = proxy.AllDestinations
                .Where(d => !tried.Contains(d.DestinationId) && d.Health.Active != DestinationHealth.Unhealthy && d.Health.Passive != DestinationHealth.Unhealthy)
                .ToList();
            if (rest.Count == 0)
            {
                return;
            }
            proxy.AvailableDestinations = rest;
            proxy.ProxiedDestination = null;
            context.Features.Set<IForwarderErrorFeature>(null);
            context.Response.StatusCode = StatusCodes.Status200OK;
            if (context.Request.Body.CanSeek)
            {
                context.Request.Body.Position = 0;
            }
            else if (context.Request.ContentLength is > 0)
            {
                return;   // a body that cannot be sent again
            }
        }
    }

    /// <summary>True when forwarding failed to connect: the replica never received the request.</summary>
    internal static bool NeverReachedTheReplica(IForwarderErrorFeature error)
    {
        if (error.Error is not (ForwarderError.Request or ForwarderError.RequestCreation))
        {
            return false;
        }
        for (Exception? e = error.Exception; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError }
                || e is System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.ConnectionRefused })
            {
                return true;
            }
        }
        return false;
    }
}
