using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace SpecDecode.Router;

/// <summary>
/// YARP load balancing by conversation: rendezvous (highest-random-weight) hashing of the conversation over the
/// healthy replicas. A conversation stays on its replica while it is healthy; when it dies only its conversations
/// move (each to the next replica of its own ranking, cold), and they come back when it returns. Requests without a
/// conversation go to the replica with the fewest requests in flight.
/// </summary>
/// <remarks>Thaler and Ravishankar, 1998, "Using name-based mappings to increase hit rates" (rendezvous hashing). The
/// hash is SHA-256, not <see cref="HashCode"/>: two routers, or one restarted, must agree on every conversation's
/// replica.</remarks>
internal sealed class ConversationLoadBalancingPolicy : ILoadBalancingPolicy
{
    /// <summary>The policy's name in the cluster configuration.</summary>
    public const string PolicyName = "Conversation";

    public string Name => PolicyName;

    public DestinationState? PickDestination(HttpContext context, ClusterState cluster, IReadOnlyList<DestinationState> availableDestinations)
    {
        if (availableDestinations.Count == 0)
        {
            return null;
        }
        if (context.Items[ConversationKey.ItemKey] is not string conversation)
        {
            DestinationState least = availableDestinations[0];
            foreach (DestinationState d in availableDestinations)
            {
                if (d.ConcurrentRequestCount < least.ConcurrentRequestCount)
                {
                    least = d;
                }
            }
            return least;
        }
        return Pick(conversation, availableDestinations, d => d.DestinationId);
    }

    /// <summary>The candidate with the highest weight for <paramref name="conversation"/>.</summary>
    internal static T Pick<T>(string conversation, IReadOnlyList<T> candidates, Func<T, string> id)
    {
        T best = candidates[0];
        ulong bestWeight = Weight(conversation, id(best));
        for (int i = 1; i < candidates.Count; i++)
        {
            ulong weight = Weight(conversation, id(candidates[i]));
            if (weight > bestWeight)
            {
                best = candidates[i];
                bestWeight = weight;
            }
        }
        return best;
    }

    internal static ulong Weight(string conversation, string destination)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(conversation + "\n" + destination), digest);
        return BinaryPrimitives.ReadUInt64LittleEndian(digest);
    }
}
